//! Work waiting for an engine, taken in turn by owner (round robin), each owner's in order: one
//! client's burst does not keep every other client waiting behind it.

use std::collections::{HashMap, VecDeque};

pub(crate) struct Turns<T> {
    by_owner: HashMap<String, VecDeque<T>>,
    /// Owners with waiting work, in the order their next item is taken.
    order: VecDeque<String>,
}

impl<T> Default for Turns<T> {
    fn default() -> Self {
        Turns {
            by_owner: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T> Turns<T> {
    pub(crate) fn push(&mut self, owner: &str, item: T) {
        let queue = self.by_owner.entry(owner.to_owned()).or_default();
        if queue.is_empty() {
            self.order.push_back(owner.to_owned());
        }
        queue.push_back(item);
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let owner = self.order.pop_front()?;
        let queue = self.by_owner.get_mut(&owner)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.by_owner.remove(&owner);
        } else {
            self.order.push_back(owner);
        }
        item
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_take_turns_and_keep_their_own_order() {
        let mut turns = Turns::default();
        for i in 0..4 {
            turns.push("a", format!("a{i}"));
        }
        turns.push("b", "b0".to_string());
        turns.push("c", "c0".to_string());
        turns.push("b", "b1".to_string());
        let order: Vec<String> = std::iter::from_fn(|| turns.pop()).collect();
        assert_eq!(order, ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]);
        assert!(turns.is_empty());
    }
}
