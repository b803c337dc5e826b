//! The driver's view of the cluster's nodes, for the operator: every few
//! seconds the session's cluster state is read (no request is sent), a node
//! whose connections are all gone is logged as a warning, its return as
//! info; `serve`'s sampler puts the counts in
//! `tributary_sink_cassandra_nodes{pipeline,state}` and the list on the
//! dashboard.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use scylla::client::session::Session;

/// How often the cluster state is read.
const EVERY: Duration = Duration::from_secs(2);

/// One node as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeView {
    /// `ip:port` the driver connects to.
    pub address: String,
    pub datacenter: Option<String>,
    /// The driver holds at least one open connection to it.
    pub up: bool,
}

/// The latest view, shared by a sink's clones; the watch stops when the
/// session is dropped.
#[derive(Debug, Clone, Default)]
pub struct NodeWatch {
    latest: Arc<Mutex<Vec<NodeView>>>,
}

impl NodeWatch {
    /// Reads the session's nodes now and then every [`EVERY`] seconds.
    pub fn start(session: &Arc<Session>) -> NodeWatch {
        let watch = NodeWatch::default();
        watch.update(&view(session));
        let (weak, latest) = (Arc::downgrade(session), watch.clone());
        tokio::spawn(async move { latest.follow(weak).await });
        watch
    }

    /// Address, datacenter and up/down of every node, by address.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.latest.lock().map(|v| v.clone()).unwrap_or_default()
    }

    async fn follow(self, session: Weak<Session>) {
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(session) = session.upgrade() else {
                return;
            };
            let now = view(&session);
            drop(session);
            self.update(&now);
        }
    }

    /// Stores `now`, logging what changed since the last view and setting
    /// the gauges.
    fn update(&self, now: &[NodeView]) {
        let Ok(mut latest) = self.latest.lock() else {
            return;
        };
        for line in changes(&latest, now) {
            match line {
                Change::Down(n) => tracing::warn!(
                    node = %n.address,
                    datacenter = n.datacenter.as_deref().unwrap_or("?"),
                    "Cassandra node is down (the driver has no connection to it); \
                     writes go to the other replicas while the consistency level can be met"
                ),
                Change::Up(n) => tracing::info!(
                    node = %n.address,
                    datacenter = n.datacenter.as_deref().unwrap_or("?"),
                    "Cassandra node is up again"
                ),
            }
        }
        *latest = now.to_vec();
    }
}

/// The session's nodes, sorted by address.
fn view(session: &Session) -> Vec<NodeView> {
    let state = session.get_cluster_state();
    let mut nodes: Vec<NodeView> = state
        .get_nodes_info()
        .iter()
        .map(|n| NodeView {
            address: n.address.to_string(),
            datacenter: n.datacenter.clone(),
            up: n.is_connected(),
        })
        .collect();
    nodes.sort_by(|a, b| a.address.cmp(&b.address));
    nodes
}

#[derive(Debug, PartialEq)]
enum Change<'a> {
    Down(&'a NodeView),
    Up(&'a NodeView),
}

/// Nodes that went down or came back between two views. A node seen for
/// the first time is news only when it is down.
fn changes<'a>(before: &[NodeView], now: &'a [NodeView]) -> Vec<Change<'a>> {
    let was: BTreeMap<&str, bool> = before.iter().map(|n| (n.address.as_str(), n.up)).collect();
    now.iter()
        .filter_map(|n| match (was.get(n.address.as_str()), n.up) {
            (Some(true) | None, false) => Some(Change::Down(n)),
            (Some(false), true) => Some(Change::Up(n)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(address: &str, up: bool) -> NodeView {
        NodeView {
            address: address.into(),
            datacenter: Some("dc1".into()),
            up,
        }
    }

    #[test]
    fn a_node_going_down_and_coming_back_is_reported_once_each_way() {
        let all = [node("a", true), node("b", true), node("c", true)];
        let b_down = [node("a", true), node("b", false), node("c", true)];
        assert!(changes(&[], &all).is_empty());
        assert_eq!(changes(&all, &b_down), vec![Change::Down(&b_down[1])]);
        assert!(changes(&b_down, &b_down).is_empty());
        assert_eq!(changes(&b_down, &all), vec![Change::Up(&all[1])]);
        // first seen down: said at once
        assert_eq!(changes(&[], &b_down), vec![Change::Down(&b_down[1])]);
    }

    #[test]
    fn the_latest_view_is_what_the_dashboard_gets() {
        let watch = NodeWatch::default();
        watch.update(&[node("a", true), node("b", false)]);
        assert_eq!(watch.nodes(), vec![node("a", true), node("b", false)]);
    }
}
