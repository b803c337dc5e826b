'use strict';
// The topic's messages and the table's rows. Messages are the newest, kept
// live, until a look is asked for: a partition, an offset or a time to read
// forward from, a key to search for (the server looks at a bounded number
// of messages per request and says where to go on: "More"). Rows are the
// newest, or those of one key. Loaded after app.js, whose helpers it uses.

const browse = {
  look: null, // the look shown (null: the newest, live)
  more: null, // the look that goes on from it
  partitions: '', // the partitions the selector offers
  rowKey: null, // the key whose rows are shown (null: the newest)
};

function resetBrowse() {
  Object.assign(browse, { look: null, more: null, partitions: '', rowKey: null });
  $('#msg-form').reset();
  $('#row-form').reset();
  $('#msg-partition').replaceChildren(el('option', { value: '' }, 'all'));
  for (const id of ['#msg-status', '#row-status']) setText(id, '');
  $('#msg-more').hidden = true;
  $('#row-clear').hidden = true;
  showSeekInput();
  const p = shown();
  $('#row-key').placeholder = keyHint(p);
  $('#msg-key').placeholder = p?.kind === 'table' ? 'key (exact; the row\'s primary key)' : 'key (exact; a user\'s id)';
}

// What a row key looks like for the pipeline shown.
function keyHint(p) {
  if (!p || p.kind !== 'table' || !p.table) return 'id (a uuid)';
  const keys = p.table.partition_key;
  if (keys.length === 1) return `${keys[0]}, or {"${keys[0]}": …, …}`;
  return `{${keys.map((k) => `"${k}": …`).join(', ')}}`;
}

// ---------------------------------------------------------------- topic

async function refreshTopic() {
  renderTopic(await api(of('/api/v1/topic')));
  if (browse.look) return; // a look stays as it is until "Live"
  const messages = await api(of('/api/v1/topic/messages?limit=10'));
  if (!browse.look && changed('messages', messages)) renderMessages(messages, false);
}

function renderTopic(t) {
  setText('#topic-name', `${t.topic} · group ${t.group} · lag ${fmtInt(t.lag)}`);
  // Members are numbered in the order the API lists them (by first partition).
  const members = t.members ?? [];
  const number = new Map(members.map((m, i) => [m.member_id, i + 1]));
  const owner = (id) => (id == null ? '—' : `#${number.get(id) ?? '?'}`);
  $('#partitions').replaceChildren(...t.partitions.map((p) => el('tr', {},
    el('td', { class: 'mono' }, p.partition), el('td', { class: 'num' }, fmtInt(p.committed)),
    el('td', { class: 'num' }, fmtInt(p.end)), el('td', { class: p.lag > 0 ? 'num warn' : 'num' }, fmtInt(p.lag)),
    el('td', { class: 'mono', title: p.member ?? 'no member holds it' }, t.members ? owner(p.member) : '—'))));
  $('#members-box').hidden = t.members == null;
  setText('#members-state', t.members == null ? '' : `${members.length} · ${t.group_state || 'no group'}`);
  $('#members').replaceChildren(...members.map((m, i) => el('tr', {},
    el('td', { class: 'mono' }, `#${i + 1}`), el('td', { class: 'mono' }, m.member_id),
    el('td', {}, m.client_id), el('td', { class: 'mono' }, m.host),
    el('td', { class: m.error ? 'mono warn' : 'mono' }, m.error ? `? ${m.error}` : (m.partitions.join(', ') || '—')))));
  const ids = t.partitions.map((p) => String(p.partition));
  if (ids.join(',') !== browse.partitions) {
    browse.partitions = ids.join(',');
    const select = $('#msg-partition');
    const was = select.value;
    select.replaceChildren(el('option', { value: '' }, 'all'), ...ids.map((id) => el('option', { value: id }, id)));
    select.value = ids.includes(was) ? was : '';
  }
}

function renderMessages(data, append) {
  const list = data.messages.map((m) => {
    const body = m.json != null ? JSON.stringify(m.json, null, 2) : (m.text ?? '');
    const key = m.key == null ? null
      : el('span', { class: 'key', title: 'search this key', 'data-key': m.key }, `key ${m.key}`);
    const meta = [`p${m.partition} @ ${fmtInt(m.offset)}`, fmtAt(m.timestamp_ms), key, `${fmtInt(m.payload_bytes)} B`]
      .filter((x) => x != null).flatMap((x, i) => (i ? [' · ', x] : [x]));
    return el('div', { class: 'msg', 'data-offset': m.offset, 'data-partition': m.partition },
      el('div', { class: 'sub mono' }, meta), el('pre', {}, body));
  });
  const box = $('#messages');
  if (append) box.append(...list);
  else box.replaceChildren(...(list.length ? list : [el('p', { class: 'empty' }, 'no messages')]));
}

function showSeekInput() {
  const mode = $('#msg-mode').value;
  $('#msg-offset').hidden = mode !== 'offset';
  $('#msg-time').hidden = mode !== 'time';
}

// The look the form asks for; null for the newest of every partition.
function formLook() {
  const look = {};
  const partition = $('#msg-partition').value;
  if (partition !== '') look.partition = partition;
  const mode = $('#msg-mode').value;
  if (mode === 'offset') {
    const offset = $('#msg-offset').value.trim();
    if (!/^\d+$/.test(offset)) throw new Error('an offset is a whole number, 0 or more');
    look.offset = offset;
  } else if (mode === 'time') {
    // A datetime-local value is the browser's local time.
    const at = new Date($('#msg-time').value).getTime();
    if (Number.isNaN(at)) throw new Error('pick a time');
    look.time = String(at);
  }
  const key = $('#msg-key').value;
  if (key !== '') look.key = key;
  return Object.keys(look).length ? look : null;
}

async function onLook(event) {
  event.preventDefault();
  let look;
  try {
    look = formLook();
  } catch (err) {
    setText('#msg-status', err.message);
    return;
  }
  if (!look) { goLive(); return; }
  await runLook(look, false);
}

async function runLook(look, append) {
  const gen = state.gen;
  const query = new URLSearchParams({ ...look, limit: '20' });
  const button = $('#msg-more');
  button.disabled = true;
  try {
    const data = await api(of(`/api/v1/topic/messages?${query}`));
    if (gen !== state.gen) return;
    browse.look = look;
    renderMessages(data, append);
    const shownNow = $('#messages').querySelectorAll('.msg').length;
    const next = data.next;
    browse.more = next ? { ...without(look, ['offset', 'before', 'time']), ...mapValues(next, String) } : null;
    button.hidden = !next;
    const order = data.order === 'oldest_first' ? 'oldest first' : 'newest first';
    const parts = [`${fmtInt(shownNow)} message${shownNow === 1 ? '' : 's'}, ${order}`];
    if (data.search) {
      const s = data.search;
      parts.push(s.complete
        ? `key searched to the ${data.order === 'oldest_first' ? 'end' : 'start'} of the partition`
        : `looked at ${fmtInt(s.scanned)} messages (at most ${fmtInt(s.scan_max)} a request): "More" searches on`);
    } else if (!next) {
      parts.push('nothing further');
    }
    setText('#msg-status', parts.join(' · '));
  } catch (err) {
    if (err instanceof AuthError || err instanceof NetError) handleError(err, gen);
    else if (gen === state.gen) setText('#msg-status', err.message);
  } finally {
    button.disabled = false;
  }
}

const without = (o, keys) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
const mapValues = (o, f) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));

// Back to the newest messages, kept live.
function goLive() {
  browse.look = null;
  browse.more = null;
  $('#msg-form').reset();
  showSeekInput();
  $('#msg-more').hidden = true;
  setText('#msg-status', '');
  state.seen.delete('messages');
  refreshTopic().catch((err) => handleError(err));
}

// A click on a message's key searches for it.
function onMessageClick(event) {
  const key = event.target.closest('[data-key]')?.dataset.key;
  if (key == null) return;
  $('#msg-key').value = key;
  const partition = event.target.closest('.msg')?.dataset.partition;
  if (browse.partitions.includes(',') && partition != null) $('#msg-partition').value = partition;
  $('#msg-form').requestSubmit();
}

// ---------------------------------------------------------------- table

async function refreshRows() {
  if (browse.rowKey != null) return;
  const data = await api(of('/api/v1/rows?limit=10'));
  if (browse.rowKey == null && changed('rows', data)) renderRows(data);
}

// The users' table shows the seed table's main columns, shortened; a typed
// table every column, a cell that is not text as JSON. The row count is
// the status's (one number for the whole page), not this answer's.
function renderRows(data) {
  setText('#rows-store', data.store || '');
  const users = shown()?.kind !== 'table';
  const columns = users ? USER_COLUMNS : data.columns.map((c) => [c, c]);
  const key = JSON.stringify(columns);
  if (key !== state.rowColumns) {
    state.rowColumns = key;
    $('#rows-head').replaceChildren(...columns.map(([col, label]) => el('th', { scope: 'col', class: users ? null : 'mono' }, label)));
  }
  const text = (v) => (v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  const short = (col, v) => (!users ? v : col === 'id' ? v.slice(0, 8) : /^\d{4}-\d\d-\d\dT/.test(v) ? v.slice(0, 10) : v);
  // The column a click looks rows up by: the users' id, a table's one
  // partition-key column.
  const partition = shown()?.table?.partition_key ?? [];
  const keyColumn = users ? 'id' : partition.length === 1 ? partition[0] : null;
  const cell = (row, col) => el('td', {
    title: text(row[col]),
    class: [users && col === 'id' ? 'mono' : null, col === keyColumn ? 'key' : null].filter(Boolean).join(' ') || null,
    'data-key': col === keyColumn ? text(row[col]) : null,
  }, short(col, text(row[col])));
  const rows = data.rows.map((row) => el('tr', {}, columns.map(([col]) => cell(row, col))));
  const none = data.key != null ? `no row with key ${data.key}` : 'no rows yet';
  $('#rows').replaceChildren(...(rows.length ? rows
    : [el('tr', {}, el('td', { colspan: columns.length, class: 'empty' }, none))]));
}

async function onFindRows(event) {
  event.preventDefault();
  const key = $('#row-key').value.trim();
  if (!key) { showNewestRows(); return; }
  const gen = state.gen;
  try {
    const data = await api(of(`/api/v1/rows?limit=50&key=${encodeURIComponent(key)}`));
    if (gen !== state.gen) return;
    browse.rowKey = key;
    renderRows(data);
    const n = data.rows.length;
    setText('#row-status', `${fmtInt(n)} row${n === 1 ? '' : 's'} with key ${key} (${data.key_columns.join(', ')})`);
    $('#row-clear').hidden = false;
  } catch (err) {
    if (err instanceof AuthError || err instanceof NetError) handleError(err, gen);
    else if (gen === state.gen) setText('#row-status', err.message);
  }
}

function showNewestRows() {
  browse.rowKey = null;
  $('#row-form').reset();
  $('#row-clear').hidden = true;
  setText('#row-status', '');
  state.seen.delete('rows');
  refreshRows().catch((err) => handleError(err));
}

// A click on a user's id (a table's partition key) looks its rows up.
function onRowClick(event) {
  const key = event.target.closest('[data-key]')?.dataset.key;
  if (!key) return;
  $('#row-key').value = key;
  $('#row-form').requestSubmit();
}

function wireBrowse() {
  $('#msg-form').addEventListener('submit', onLook);
  $('#msg-mode').addEventListener('change', showSeekInput);
  $('#msg-live').addEventListener('click', goLive);
  $('#msg-more').addEventListener('click', () => browse.more && runLook(browse.more, true));
  $('#messages').addEventListener('click', onMessageClick);
  $('#row-form').addEventListener('submit', onFindRows);
  $('#row-clear').addEventListener('click', showNewestRows);
  $('#rows').addEventListener('click', onRowClick);
}
