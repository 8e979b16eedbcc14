//! Autoplace: choose nodes and storage pools for new diskful replicas from an AutoSelectFilter.
//! Follows the controller's rules that matter to clients: never removes replicas, honours pool
//! lists, provider kinds, node lists, replicas-on-same/different (node `Aux/` props) and
//! not-place-with; prefers the pools with the most free space.

use std::collections::{BTreeMap, BTreeSet};

use super::api::AutoSelectFilter;
use super::state::{Resource, World};
use super::validate::key;

#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Enough diskful replicas exist already (`existing` of them, `wanted` asked for).
    AlreadyDeployed { existing: usize, wanted: usize },
    /// New diskful replicas: (node key, storage pool).
    Place(Vec<(String, String)>),
}

#[derive(Debug)]
pub enum PlanError {
    InvalidPlaceCount(i32),
    NotEnoughNodes {
        wanted: usize,
        found: usize,
        details: String,
    },
}

struct Candidate {
    node_key: String,
    pool: String,
    free: u64,
    props: BTreeMap<String, String>,
}

/// Plans placement for a resource definition `rd_key` (None for one not created yet) whose
/// volumes need `need_kib` per replica.
pub fn plan(
    world: &World,
    rd_key: Option<&str>,
    existing: &BTreeMap<String, Resource>,
    filter: &AutoSelectFilter,
    need_kib: u64,
) -> Result<Plan, PlanError> {
    // Replicas being deleted, evicted or evacuated, or on a node being evacuated, do not count
    // as placed, so autoplace adds replacements (`CtrlRscAutoPlaceApiCallHandler` l.185–198:
    // resource flags DELETE, EVICTED, EVACUATE; node flag EVACUATE).
    let existing_diskful: Vec<&String> = existing
        .iter()
        .filter(|(nk, r)| {
            r.is_diskful()
                && !r
                    .flags
                    .iter()
                    .any(|f| matches!(f.as_str(), "DELETE" | "EVICTED" | "EVACUATE"))
                && !world
                    .nodes
                    .get(nk.as_str())
                    .is_some_and(|n| n.flags.iter().any(|f| f == "EVACUATE"))
        })
        .map(|(k, _)| k)
        .collect();
    let wanted = match (filter.additional_place_count, filter.place_count) {
        (Some(add), _) => {
            if add < 0 {
                return Err(PlanError::InvalidPlaceCount(add));
            }
            existing_diskful.len() + add as usize
        }
        // Neither the request nor the resource group sets a count: the controller takes 0
        // (`replCtInteger == null ? 0 : replCtInteger`), so nothing is placed and autoplace
        // answers WARN_RSC_ALREADY_DEPLOYED "…was already deployed on 0 nodes. Skipping."
        // (linstor-server `CtrlRscAutoPlaceApiCallHandler` l.221–262, @3e9306a9). Spawn does not
        // autoplace at all then (see `defs::spawn`).
        (None, None) => existing_diskful.len(),
        (None, Some(pc)) => {
            if pc < 1 {
                return Err(PlanError::InvalidPlaceCount(pc));
            }
            pc as usize
        }
    };
    if existing_diskful.len() >= wanted {
        return Ok(Plan::AlreadyDeployed {
            existing: existing_diskful.len(),
            wanted,
        });
    }
    let need = wanted - existing_diskful.len();

    let mut pool_names: BTreeSet<String> = BTreeSet::new();
    if let Some(p) = &filter.storage_pool {
        pool_names.insert(p.clone());
    }
    if let Some(list) = &filter.storage_pool_list {
        pool_names.extend(list.iter().cloned());
    }
    let node_list: Option<BTreeSet<String>> = filter
        .node_name_list
        .as_ref()
        .filter(|l| !l.is_empty())
        .map(|l| l.iter().map(|n| key(n)).collect());
    let avoid_rds: BTreeSet<String> = filter
        .not_place_with_rsc
        .iter()
        .flatten()
        .map(|n| key(n))
        .collect();
    let avoid_re = filter
        .not_place_with_rsc_regex
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| regex::Regex::new(&format!("(?i)^(?:{s})$")).ok());

    let mut rejected: Vec<String> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let usage = world.usage_kib();
    let avoid_any = !avoid_rds.is_empty() || avoid_re.is_some();
    for (nk, node) in &world.nodes {
        if existing.contains_key(nk) {
            continue;
        }
        if !node.online {
            rejected.push(format!("{}: offline", node.cfg.name));
            continue;
        }
        if !node.placeable() {
            rejected.push(format!("{}: being evacuated or evicted", node.cfg.name));
            continue;
        }
        if node_list.as_ref().is_some_and(|l| !l.contains(nk)) {
            continue;
        }
        let hosts_avoided = avoid_any
            && world.rds.iter().any(|(rk, rd)| {
                Some(rk.as_str()) != rd_key
                    && rd.resources.contains_key(nk)
                    && (avoid_rds.contains(rk)
                        || avoid_re.as_ref().is_some_and(|re| re.is_match(&rd.name)))
            });
        if hosts_avoided {
            rejected.push(format!("{}: hosts a resource to avoid", node.cfg.name));
            continue;
        }
        let best = node
            .cfg
            .pools
            .iter()
            .filter(|p| p.provider_kind != "DISKLESS")
            .filter(|p| pool_names.is_empty() || pool_names.contains(&p.name))
            .filter(|p| {
                filter
                    .provider_list
                    .as_ref()
                    .is_none_or(|l| l.is_empty() || l.contains(&p.provider_kind))
            })
            .map(|p| {
                let used = usage.get(&(nk.clone(), p.name.clone())).copied();
                (p, p.total_kib.saturating_sub(used.unwrap_or(0)))
            })
            .filter(|(_, free)| *free >= need_kib)
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.name.cmp(&a.0.name)));
        match best {
            Some((p, free)) => cands.push(Candidate {
                node_key: nk.clone(),
                pool: p.name.clone(),
                free,
                props: node.cfg.props.clone(),
            }),
            None => rejected.push(format!(
                "{}: no matching storage pool with {need_kib} KiB free",
                node.cfg.name
            )),
        }
    }
    cands.sort_by(|a, b| {
        b.free
            .cmp(&a.free)
            .then_with(|| a.node_key.cmp(&b.node_key))
    });

    // Per-key caps: replicas_on_different is a cap of 1 per value.
    let mut caps: BTreeMap<String, usize> = BTreeMap::new();
    for k in filter.replicas_on_different.iter().flatten() {
        caps.insert(k.clone(), 1);
    }
    for (k, n) in filter.x_replicas_on_different_map.iter().flatten() {
        caps.insert(k.clone(), (*n).max(1) as usize);
    }
    let same_keys: Vec<String> = filter.replicas_on_same.clone().unwrap_or_default();
    let props_of = |nk: &str| {
        world
            .nodes
            .get(nk)
            .map(|n| n.cfg.props.clone())
            .unwrap_or_default()
    };

    // replicas_on_same: fixed by existing diskful replicas, else try each value group.
    let groups: Vec<Vec<Option<String>>> = if same_keys.is_empty() {
        vec![vec![]]
    } else if let Some(first) = existing_diskful.first() {
        let p = props_of(first);
        vec![same_keys.iter().map(|k| p.get(k).cloned()).collect()]
    } else {
        let mut seen: Vec<Vec<Option<String>>> = Vec::new();
        for c in &cands {
            let g: Vec<Option<String>> =
                same_keys.iter().map(|k| c.props.get(k).cloned()).collect();
            if g.iter().all(Option::is_some) && !seen.contains(&g) {
                seen.push(g);
            }
        }
        seen
    };

    let mut best_pick: Vec<(String, String)> = Vec::new();
    for group in &groups {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for nk in &existing_diskful {
            let p = props_of(nk);
            for k in caps.keys() {
                if let Some(v) = p.get(k) {
                    *counts.entry((k.clone(), v.clone())).or_default() += 1;
                }
            }
        }
        let mut picked: Vec<(String, String)> = Vec::new();
        for c in &cands {
            if picked.len() == need {
                break;
            }
            let same_ok = same_keys
                .iter()
                .zip(group)
                .all(|(k, want)| want.is_some() && c.props.get(k) == want.as_ref());
            if !same_ok {
                continue;
            }
            let diff_ok = caps.iter().all(|(k, cap)| match c.props.get(k) {
                Some(v) => counts.get(&(k.clone(), v.clone())).copied().unwrap_or(0) < *cap,
                None => false,
            });
            if !diff_ok {
                continue;
            }
            for k in caps.keys() {
                if let Some(v) = c.props.get(k) {
                    *counts.entry((k.clone(), v.clone())).or_default() += 1;
                }
            }
            picked.push((c.node_key.clone(), c.pool.clone()));
        }
        if picked.len() == need {
            return Ok(Plan::Place(picked));
        }
        if picked.len() > best_pick.len() {
            best_pick = picked;
        }
    }
    let mut details = format!(
        "Needed {need} more diskful replica(s) (place count {wanted}, {} existing); found {} node(s) satisfying the filter",
        existing_diskful.len(),
        best_pick.len()
    );
    if !rejected.is_empty() {
        details.push_str(&format!("; rejected: {}", rejected.join(", ")));
    }
    Err(PlanError::NotEnoughNodes {
        wanted,
        found: existing_diskful.len() + best_pick.len(),
        details,
    })
}
