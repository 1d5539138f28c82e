//! A bounded LRU cache of encoder outputs, keyed by the prompt's sha256.
//!
//! Why: identical prompts repeat in production (client retries, templated
//! prompts, evaluation loops), and the encoder pass is nearly all the cost
//! of a Route call. The batcher looks a prompt up here before queueing it;
//! a hit is answered at once and never reaches the encoder thread.
//!
//! Why no version in the key and no invalidation on reload: an entry is
//! exactly what the encoder thread answered for the prompt, the
//! [`Embedded`] (embedding and the heads' prediction). That is a function of
//! the prompt text and of the classifier (encoder weights and heads), and
//! the classifier is loaded once at start-up and never swapped: a reload
//! (SIGHUP, Admin.Reload, rollback) re-reads only the catalog and the router
//! artifact (see state.rs). Everything after the encoder (P(success), the
//! policy's decision, the decision id, the outcome-store row, the routing
//! metrics) is recomputed per request from the cached value, so a reload
//! applies to cached prompts at once and every Route call still logs its
//! own decision. If the heads or the encoder ever become reloadable, the
//! reload must clear this cache (or the key must include their version).
//!
//! Only Ok answers are put here (the batcher's encoder thread does it);
//! errors, panics and refusals are never cached, so a retry gets a fresh try.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use pointsman_classifier::Embedded;
use sha2::{Digest, Sha256};

/// The sha256 of a prompt's UTF-8 bytes. Hashing keeps the cache's memory
/// independent of prompt length (prompts may be up to --max-prompt-bytes)
/// and the raw text out of process memory longer than a request.
pub type PromptKey = [u8; 32];

/// A thread-safe LRU map from [`PromptKey`] to [`Embedded`]; capacity 0
/// means disabled (every lookup misses, nothing is stored, no lock is taken).
pub struct PromptCache {
    entries: Option<Mutex<LruCache<PromptKey, Embedded>>>,
}

impl PromptCache {
    /// A cache holding at most `capacity` prompts (0 = disabled). Memory is
    /// about 2.5 KB per entry with all-MiniLM-L6-v2 (a 384-float embedding,
    /// 11 task scores, the key and the list links).
    pub fn new(capacity: usize) -> PromptCache {
        PromptCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The key of `prompt`.
    pub fn key(prompt: &str) -> PromptKey {
        Sha256::digest(prompt.as_bytes()).into()
    }

    /// Whether the cache stores anything (capacity > 0).
    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The most entries it holds (0 = disabled).
    pub fn capacity(&self) -> usize {
        self.entries.as_ref().map_or(0, |m| lock(m).cap().get())
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |m| lock(m).len())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the entry for `key`, marking it most recently used.
    pub fn get(&self, key: &PromptKey) -> Option<Embedded> {
        lock(self.entries.as_ref()?).get(key).cloned()
    }

    /// Stores the encoder's answers for a batch under one lock, evicting the
    /// least recently used entries beyond capacity; returns the entries held
    /// afterwards. The caller clones outside the lock, so the critical section
    /// is only the list updates.
    pub fn insert_many(&self, answers: impl IntoIterator<Item = (PromptKey, Embedded)>) -> usize {
        let Some(m) = &self.entries else {
            return 0;
        };
        let mut cache = lock(m);
        for (key, value) in answers {
            cache.put(key, value);
        }
        cache.len()
    }
}

/// A panic while the lock was held cannot leave the LRU list half updated
/// in a way that matters to us (each entry is a complete value), so a
/// poisoned lock is used as is rather than failing every later request.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pointsman_classifier::Prediction;

    /// A distinguishable value: the embedding's one element is `tag`.
    fn embedded(tag: f32) -> Embedded {
        Embedded {
            embedding: vec![tag],
            prediction: Prediction {
                task: "chat".into(),
                task_scores: [("chat".to_string(), 1.0)].into(),
                difficulty: 0.5,
            },
        }
    }

    fn tag(e: Option<Embedded>) -> Option<f32> {
        e.map(|e| e.embedding[0])
    }

    #[test]
    fn keys_are_the_prompt_sha256() {
        let k = PromptCache::key("abc");
        assert_eq!(
            hex::encode(k),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(
            PromptCache::key("abc "),
            k,
            "whitespace is part of the prompt"
        );
    }

    #[test]
    fn a_stored_prompt_hits_and_another_misses() {
        let cache = PromptCache::new(8);
        assert!(cache.is_enabled());
        assert_eq!(cache.capacity(), 8);
        assert!(cache.get(&PromptCache::key("a")).is_none(), "empty cache");
        assert_eq!(
            cache.insert_many([(PromptCache::key("a"), embedded(1.0))]),
            1
        );
        assert_eq!(tag(cache.get(&PromptCache::key("a"))), Some(1.0));
        assert!(cache.get(&PromptCache::key("b")).is_none());
        // A second answer for the same prompt replaces the first (one entry).
        assert_eq!(
            cache.insert_many([(PromptCache::key("a"), embedded(2.0))]),
            1
        );
        assert_eq!(tag(cache.get(&PromptCache::key("a"))), Some(2.0));
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_first() {
        let cache = PromptCache::new(2);
        let (a, b, c) = (
            PromptCache::key("a"),
            PromptCache::key("b"),
            PromptCache::key("c"),
        );
        cache.insert_many([(a, embedded(1.0)), (b, embedded(2.0))]);
        // Reading `a` makes `b` the least recently used...
        assert_eq!(tag(cache.get(&a)), Some(1.0));
        assert_eq!(cache.insert_many([(c, embedded(3.0))]), 2);
        // ...so `c` evicts `b`, not `a` (which was inserted first).
        assert!(cache.get(&b).is_none());
        assert_eq!(tag(cache.get(&a)), Some(1.0));
        assert_eq!(tag(cache.get(&c)), Some(3.0));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn capacity_zero_disables_the_cache() {
        let cache = PromptCache::new(0);
        assert!(!cache.is_enabled());
        assert_eq!(cache.capacity(), 0);
        assert_eq!(
            cache.insert_many([(PromptCache::key("a"), embedded(1.0))]),
            0
        );
        assert!(cache.get(&PromptCache::key("a")).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn many_threads_share_one_cache() {
        let cache = std::sync::Arc::new(PromptCache::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        let k = PromptCache::key(&format!("{t}-{i}"));
                        cache.insert_many([(k, embedded(i as f32))]);
                        let _ = cache.get(&k);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cache.len(), 64, "bounded by capacity");
    }
}
