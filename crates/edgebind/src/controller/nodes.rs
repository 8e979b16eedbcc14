//! LINSTOR node state per backend, read once per resync by the backend's reconcile (one unpaged
//! `GET /v1/nodes`, like the inventory's lists), and what it means for placement (pure).
//!
//! Kept apart from the inventory on purpose: volumes read it from the backend handle, and the
//! inventory's representation can change without touching it.

use std::sync::Arc;

use serde::Deserialize;

use crate::crd::backend::BackendNode;
use crate::linstor::{LinstorClient, LinstorError};

/// One node as `GET /v1/nodes` shows it (the fields edgebind uses).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// `ONLINE`, `OFFLINE`, `CONNECTED`, ... (`connection_status`).
    #[serde(default)]
    pub connection_status: Option<String>,
    /// `EVACUATE` (`node evacuate`), `EVICTED` (auto-evict), `DELETE`, ...
    #[serde(default)]
    pub flags: Vec<String>,
}

impl NodeState {
    fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// Whether the satellite is connected and usable.
    pub fn online(&self) -> bool {
        self.connection_status.as_deref() == Some("ONLINE")
    }

    /// The word status and messages show: the flag that takes the node out of service, else its
    /// connection status.
    pub fn state(&self) -> String {
        for f in ["EVICTED", "EVACUATE", "DELETE"] {
            if self.flag(f) {
                return f.to_string();
            }
        }
        self.connection_status
            .clone()
            .unwrap_or_else(|| "UNKNOWN".into())
    }

    /// Whether autoplace may put a new replica here: online, not being deleted, evacuated or
    /// evicted (linstor-server's autoplacer filter disqualifies DELETE and EVACUATE nodes;
    /// an EVICTED node is offline).
    pub fn placeable(&self) -> bool {
        self.online() && !self.flag("EVACUATE") && !self.flag("EVICTED") && !self.flag("DELETE")
    }
}

/// The nodes of one backend at one read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    pub nodes: Vec<NodeState>,
}

impl NodeView {
    /// One unpaged list (a page would cost the server the whole list each time, see
    /// `LinstorClient::list`).
    pub async fn read(client: &LinstorClient) -> Result<Arc<NodeView>, LinstorError> {
        let mut nodes: Vec<NodeState> = client.list("/v1/nodes", &[]).await?;
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Arc::new(NodeView { nodes }))
    }

    /// How many more nodes could take a replica of a volume whose live replicas are on
    /// `hosting` (LINSTOR places at most one replica per node).
    pub fn placeable_besides(&self, hosting: &[&str]) -> u32 {
        self.nodes
            .iter()
            .filter(|n| n.placeable())
            .filter(|n| !hosting.iter().any(|h| h.eq_ignore_ascii_case(&n.name)))
            .count() as u32
    }

    /// The nodes that cannot take a replica now, as `name (STATE)`, for messages.
    pub fn unavailable(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| !n.placeable())
            .map(|n| format!("{} ({})", n.name, n.state()))
            .collect()
    }

    /// What `LinstorBackend.status.nodes` shows.
    pub fn status(&self) -> Vec<BackendNode> {
        self.nodes
            .iter()
            .map(|n| BackendNode {
                name: n.name.clone(),
                state: n.state(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(v: serde_json::Value) -> NodeView {
        NodeView {
            nodes: serde_json::from_value(v).expect("nodes"),
        }
    }

    #[test]
    fn only_online_nodes_in_service_take_replicas() {
        let v = view(json!([
            {"name": "a", "connection_status": "ONLINE"},
            {"name": "b", "connection_status": "ONLINE", "flags": ["EVACUATE"]},
            {"name": "c", "connection_status": "OFFLINE"},
            {"name": "d", "connection_status": "OFFLINE", "flags": ["EVICTED"]},
            {"name": "e", "connection_status": "ONLINE"},
        ]));
        assert_eq!(v.placeable_besides(&["A"]), 1, "e only");
        assert_eq!(v.placeable_besides(&[]), 2);
        assert_eq!(
            v.unavailable(),
            vec!["b (EVACUATE)", "c (OFFLINE)", "d (EVICTED)"]
        );
        let st = v.status();
        assert_eq!(st[1].state, "EVACUATE");
        assert_eq!(st[0].state, "ONLINE");
    }
}
