//! Children started on first use (a tenant's supervisor, a customer's conversation). Starting
//! one may take I/O, so a supervisor never awaits it inside `handle`: the first asker
//! triggers a start in a task, later askers queue behind it, and everyone is answered when
//! the task reports back. Nothing is started twice.

use std::collections::HashMap;
use std::hash::Hash;

use ractor::RpcReplyPort;

/// The answer every asker gets.
pub type Started<V> = Result<V, String>;

enum Slot<V> {
    Running(V),
    Starting(Vec<RpcReplyPort<Started<V>>>),
}

/// Children by key, running or starting.
pub struct Registry<K, V> {
    slots: HashMap<K, Slot<V>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Registry<K, V> {
    /// Answers at once when `key` runs, or queues the reply. True when the caller must now
    /// start the child and report with [`Registry::started`].
    pub fn ask(&mut self, key: K, reply: RpcReplyPort<Started<V>>) -> bool {
        match self.slots.get_mut(&key) {
            Some(Slot::Running(value)) => {
                let _ = reply.send(Ok(value.clone()));
                false
            }
            Some(Slot::Starting(waiting)) => {
                waiting.push(reply);
                false
            }
            None => {
                self.slots.insert(key, Slot::Starting(vec![reply]));
                true
            }
        }
    }

    /// The start finished: answers everyone who asked, and keeps the child if it runs.
    pub fn started(&mut self, key: K, result: Started<V>) {
        if let Some(Slot::Starting(waiting)) = self.slots.remove(&key) {
            for reply in waiting {
                let _ = reply.send(result.clone());
            }
        }
        if let Ok(value) = result {
            self.slots.insert(key, Slot::Running(value));
        }
    }

    /// Forgets running children that match (they stopped); the next ask starts a fresh one.
    /// True when one was forgotten.
    pub fn forget(&mut self, mut stopped: impl FnMut(&V) -> bool) -> bool {
        let before = self.slots.len();
        self.slots
            .retain(|_, slot| !matches!(slot, Slot::Running(v) if stopped(v)));
        self.slots.len() != before
    }

    /// The running value of `key`, if it is running (not while it starts).
    pub fn running_for(&self, key: &K) -> Option<&V> {
        match self.slots.get(key) {
            Some(Slot::Running(value)) => Some(value),
            _ => None,
        }
    }

    /// The children that run now.
    pub fn running(&self) -> impl Iterator<Item = &V> {
        self.slots.values().filter_map(|slot| match slot {
            Slot::Running(v) => Some(v),
            Slot::Starting(_) => None,
        })
    }
}
