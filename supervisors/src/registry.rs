//! Children started on first use (a tenant's supervisor, a customer's conversation). Starting
//! one may take I/O, so a supervisor never awaits it inside `handle`: the first asker
//! triggers a start in a task, later askers queue behind it, and everyone is answered when
//! the task reports back. Nothing is started twice. A child may also be retired (stopped
//! while idle): askers wait until it has stopped, then a fresh one starts for them, so two
//! never run for one key.

use std::collections::HashMap;
use std::hash::Hash;

use ractor::RpcReplyPort;

/// The answer every asker gets.
pub type Started<V> = Result<V, String>;

enum Slot<V> {
    Running(V),
    Starting(Vec<RpcReplyPort<Started<V>>>),
    /// Told to stop; who asked since waits for its successor.
    Stopping(V, Vec<RpcReplyPort<Started<V>>>),
}

/// What became of a stopped child's slot, as [`Registry::forget`] found it.
#[derive(Debug, PartialEq, Eq)]
pub enum Forgotten<K> {
    /// The child was not (or no longer) registered.
    Unknown,
    /// Forgotten; the next ask for this key starts a fresh one.
    Gone(K),
    /// It was retired while asked for: the caller must start a fresh one for this key now
    /// and report with [`Registry::started`].
    Wanted(K),
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
            Some(Slot::Starting(waiting) | Slot::Stopping(_, waiting)) => {
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

    /// Forgets the child that matches (it stopped). Returns [`Forgotten::Wanted`] when it
    /// was retired and asked for meanwhile.
    pub fn forget(&mut self, mut stopped: impl FnMut(&V) -> bool) -> Forgotten<K>
    where
        K: Clone,
    {
        let Some(key) = self.slots.iter().find_map(|(key, slot)| match slot {
            Slot::Running(v) | Slot::Stopping(v, _) if stopped(v) => Some(key.clone()),
            _ => None,
        }) else {
            return Forgotten::Unknown;
        };
        match self.slots.remove(&key) {
            Some(Slot::Stopping(_, waiting)) if !waiting.is_empty() => {
                self.slots.insert(key.clone(), Slot::Starting(waiting));
                Forgotten::Wanted(key)
            }
            _ => Forgotten::Gone(key),
        }
    }

    /// Takes the running child of `key` out of service so it can be stopped: returns it,
    /// and askers wait until [`Registry::forget`] hears it stopped.
    pub fn retire(&mut self, key: &K) -> Option<V> {
        let slot = self.slots.get_mut(key)?;
        let Slot::Running(value) = slot else {
            return None;
        };
        let value = value.clone();
        *slot = Slot::Stopping(value.clone(), Vec::new());
        Some(value)
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
            Slot::Starting(_) | Slot::Stopping(..) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Asks for `key`: whether the asker must start it, and where its answer arrives.
    fn ask(
        registry: &mut Registry<&'static str, u32>,
        key: &'static str,
    ) -> (bool, oneshot::Receiver<Started<u32>>) {
        let (reply, answer) = oneshot::channel();
        (registry.ask(key, reply.into()), answer)
    }

    #[test]
    fn askers_of_a_retiring_child_wait_for_its_successor() {
        let mut registry = Registry::default();
        let (must_start, mut first) = ask(&mut registry, "a");
        assert!(must_start);
        registry.started("a", Ok(1));
        assert_eq!(first.try_recv(), Ok(Ok(1)));

        assert_eq!(registry.retire(&"a"), Some(1));
        assert_eq!(registry.retire(&"a"), None, "retired once");
        assert_eq!(registry.running_for(&"a"), None);
        let (must_start, mut waiting) = ask(&mut registry, "a");
        assert!(!must_start, "nothing starts while the old one stops");
        assert!(waiting.try_recv().is_err());

        assert_eq!(registry.forget(|v| *v == 1), Forgotten::Wanted("a"));
        registry.started("a", Ok(2));
        assert_eq!(waiting.try_recv(), Ok(Ok(2)));
        assert_eq!(registry.running_for(&"a"), Some(&2));
    }

    #[test]
    fn a_retired_child_nobody_asked_for_is_gone_and_the_next_ask_starts_one() {
        let mut registry = Registry::default();
        let _ = ask(&mut registry, "a");
        registry.started("a", Ok(1));
        assert_eq!(registry.retire(&"a"), Some(1));
        assert_eq!(registry.forget(|v| *v == 1), Forgotten::Gone("a"));
        assert_eq!(registry.forget(|v| *v == 1), Forgotten::Unknown);
        assert!(ask(&mut registry, "a").0);
    }
}
