//! What a replica will take: the models it lists (learnt from its `/v1/models`) and whether it
//! is draining (no new requests; removed once its in-flight ones finish).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use arc_swap::ArcSwapOption;

/// Model list and drain flag of one replica.
#[derive(Debug, Default)]
pub struct Serving {
    models: ArcSwapOption<Vec<String>>,
    draining: AtomicBool,
}

impl Serving {
    /// The model ids (adapters included) the replica listed; `None` until learnt.
    pub fn models(&self) -> Option<Arc<Vec<String>>> {
        self.models.load_full()
    }

    /// Records the replica's model list.
    pub fn set_models(&self, models: Vec<String>) {
        self.models.store(Some(Arc::new(models)));
    }

    /// Whether the replica takes no new requests.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts (true) or cancels (false) draining; returns the previous value.
    pub fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::Relaxed)
    }

    /// Whether `model` may be sent here: not draining, and the model listed (or the list not
    /// learnt yet, or no model named).
    pub fn accepts(&self, model: Option<&str>) -> bool {
        if self.is_draining() {
            return false;
        }
        self.lists(model)
    }

    /// Whether the learnt list has `model` (true when unknown or no model given).
    pub fn lists(&self, model: Option<&str>) -> bool {
        match (model, &*self.models.load()) {
            (Some(model), Some(list)) => list.iter().any(|m| m == model),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_lists_accept_anything_known_ones_only_their_models() {
        let s = Serving::default();
        assert!(s.accepts(Some("a")));
        s.set_models(vec!["a".into(), "a-lora".into()]);
        assert!(s.accepts(Some("a-lora")) && s.accepts(None));
        assert!(!s.accepts(Some("b")));
        assert!(!s.set_draining(true));
        assert!(!s.accepts(Some("a")) && s.lists(Some("a")));
    }
}
