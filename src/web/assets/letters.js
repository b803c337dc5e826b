'use strict';
// The dead letters of the pipeline shown: replay them, or discard them for
// good (kept for audit with the time and the reason given, never replayed).
// Loaded after app.js, whose helpers it uses.

// ---------------------------------------------------------------- dead letters

async function refreshDeadLetters() {
  const data = await api(of('/api/v1/dead-letters'));
  if (changed('dead-letters', data)) renderDeadLetters(data);
}

function renderDeadLetters(data) {
  setText('#dl-waiting', fmtInt(data.waiting));
  setText('#dl-discarded', fmtInt(data.discarded));
  $('#replay-all').disabled = data.waiting === 0;
  $('#discard-all').disabled = data.waiting === 0;
  const rows = data.dead_letters.map((d) => {
    const origin = d.topic != null ? `${d.topic}[${d.partition}]@${d.offset}` : 'source';
    const button = el('button', { type: 'button', 'data-action': 'replay' }, 'Replay');
    button.addEventListener('click', () => replay([d.id], button));
    const discardButton = el('button', { type: 'button', 'data-action': 'discard' }, 'Discard');
    discardButton.addEventListener('click', () => discard([d.id], discardButton));
    return el('tr', { 'data-dl-id': d.id, title: `created ${fmtAt(d.created_ms)}` },
      el('td', { class: 'mono', 'data-label': 'id' }, d.id), el('td', {}, el('span', { class: 'badge' }, d.stage)),
      el('td', { class: 'reason' }, d.reason), el('td', { class: 'mono', 'data-label': 'origin' }, origin),
      el('td', { class: 'mono payload', title: d.payload.slice(0, 1000) }, preview(d.payload)),
      el('td', { class: 'actions' }, button, discardButton));
  });
  $('#dl-body').replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'none waiting'))]));
}

// Replays the given ids, or every waiting letter a page (1000) at a time,
// walking on with `next_after` so letters that keep failing do not block
// the ones behind them. A letter whose key has another row in the store
// stays waiting unless "overwrite" is ticked.
async function replay(ids, button) {
  const gen = state.gen;
  button.disabled = true;
  try {
    const total = { replayed: 0, still_failing: 0 };
    const overwrite = $('#dl-overwrite').checked ? { overwrite: true } : {};
    let body = ids ? { ids, ...overwrite } : { all: true, ...overwrite };
    for (;;) {
      const res = await post(of('/api/v1/dead-letters/replay'), body);
      total.replayed += res.replayed;
      total.still_failing += res.still_failing;
      const more = res.remaining > 0 ? `, ${fmtInt(res.remaining)} more to replay` : '';
      setText('#dl-result', `replayed ${fmtInt(total.replayed)}, still failing ${fmtInt(total.still_failing)}${more}`);
      if (ids || res.remaining === 0 || res.next_after == null || gen !== state.gen) break;
      body = { all: true, after: res.next_after, ...overwrite };
    }
    toast(`replayed ${total.replayed}, still failing ${total.still_failing}`, total.still_failing > 0);
    await Promise.all([refreshDeadLetters(), refreshRows()]);
  } catch (err) {
    handleError(err, gen);
  } finally {
    button.disabled = false;
  }
}

// Discards the given ids (the reason is optional), or every waiting letter
// (a reason is needed): they stay listed under "discarded", never replayed.
async function discard(ids, button) {
  const gen = state.gen;
  const reason = $('#dl-reason').value.trim();
  if (!ids && !reason) {
    setText('#dl-result', 'give a reason to discard every waiting letter');
    $('#dl-reason').focus();
    return;
  }
  button.disabled = true;
  try {
    const body = ids ? { ids, ...(reason ? { reason } : {}) } : { all: true, reason };
    const res = await post(of('/api/v1/dead-letters/discard'), body);
    const skipped = [...(res.not_found ?? []), ...(res.already_replayed ?? []), ...(res.already_discarded ?? [])];
    const text = `discarded ${fmtInt(res.discarded)}${skipped.length ? `, ${fmtInt(skipped.length)} not waiting` : ''}`;
    setText('#dl-result', text);
    toast(text);
    $('#dl-reason').value = '';
    await refreshDeadLetters();
  } catch (err) {
    handleError(err, gen);
  } finally {
    button.disabled = false;
  }
}
