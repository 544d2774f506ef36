//! The catalog: every table and materialized view by name, and which views
//! read which relations.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidemark_plan::RelationId;
use tidemark_sql::RelationInfo;

#[derive(Debug, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, Arc<RelationInfo>>,
    /// For each view, the relations it reads.
    upstreams: BTreeMap<RelationId, Vec<RelationId>>,
    next_id: RelationId,
}

impl Catalog {
    pub fn new() -> Self {
        Self {
            next_id: 1,
            ..Self::default()
        }
    }

    pub fn allocate_id(&mut self) -> RelationId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Makes `id` (a restored relation's) taken: later new ids come after it.
    pub fn reserve_id(&mut self, id: RelationId) {
        self.next_id = self.next_id.max(id + 1);
    }

    pub fn get(&self, name: &str) -> Option<Arc<RelationInfo>> {
        self.by_name.get(name).cloned()
    }

    pub fn by_id(&self, id: RelationId) -> Option<Arc<RelationInfo>> {
        self.by_name.values().find(|r| r.id == id).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<RelationInfo>> {
        self.by_name.values()
    }

    pub fn insert(&mut self, info: RelationInfo, upstreams: Vec<RelationId>) {
        self.upstreams.insert(info.id, upstreams);
        self.by_name.insert(info.name.clone(), Arc::new(info));
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<RelationInfo>> {
        let info = self.by_name.remove(name)?;
        self.upstreams.remove(&info.id);
        Some(info)
    }

    /// Views that read `id` directly.
    pub fn dependents(&self, id: RelationId) -> Vec<Arc<RelationInfo>> {
        self.upstreams
            .iter()
            .filter(|(_, ups)| ups.contains(&id))
            .filter_map(|(view, _)| self.by_id(*view))
            .collect()
    }

    /// `id` and everything built on it, dependents first (the order to drop in).
    pub fn drop_order(&self, id: RelationId) -> Vec<Arc<RelationInfo>> {
        let mut order = Vec::new();
        for dependent in self.dependents(id) {
            for r in self.drop_order(dependent.id) {
                if !order.iter().any(|o: &Arc<RelationInfo>| o.id == r.id) {
                    order.push(r);
                }
            }
        }
        if let Some(me) = self.by_id(id) {
            order.push(me);
        }
        order
    }
}
