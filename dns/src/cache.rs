//! The forwarding cache: upstream answers by (name, type), positive and negative (RFC 2308),
//! each kept for its own TTL capped at `max_ttl`, at most `capacity` entries. What comes out has
//! its TTLs lowered by the time it spent here, as a resolver's cache does.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::forward::Upstream;

#[derive(Debug)]
struct Entry {
    answer: Upstream,
    stored: Instant,
    expires: Instant,
}

/// A sized, TTL-capped cache of upstream answers.
#[derive(Debug)]
pub struct Cache {
    entries: Mutex<HashMap<(Name, RecordType), Entry>>,
    capacity: usize,
    max_ttl: u32,
}

impl Cache {
    pub fn new(capacity: usize, max_ttl: u32) -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            max_ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Name, RecordType), Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh copy of the cached answer, TTLs lowered by its age; none once expired.
    pub fn get(&self, name: &Name, qtype: RecordType) -> Option<Upstream> {
        let now = Instant::now();
        let mut entries = self.lock();
        let key = (name.clone(), qtype);
        let entry = entries.get(&key)?;
        if now >= entry.expires {
            entries.remove(&key);
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(answer)
    }

    /// Keeps `answer` for its TTL: the smallest record TTL of a positive answer, the SOA's
    /// negative TTL of a negative one. Every TTL is capped first, in what is kept and in what is
    /// returned to serve now, so clients see the same TTL from the first answer on (as CoreDNS
    /// does). Answers without a TTL to go by are served but not kept.
    pub fn keep(&self, name: &Name, qtype: RecordType, mut answer: Upstream) -> Upstream {
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(self.max_ttl);
        }
        match ttl_of(&answer) {
            Some(ttl) if ttl > 0 && self.capacity > 0 => self.insert(name, qtype, &answer, ttl),
            _ => {}
        }
        answer
    }

    fn insert(&self, name: &Name, qtype: RecordType, answer: &Upstream, ttl: u32) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: make room by dropping the one closest to expiry.
                if let Some(key) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&key);
                }
            }
        }
        entries.insert(
            (name.clone(), qtype),
            Entry {
                answer: answer.clone(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }
}

/// How long an answer may be kept, before any cap.
fn ttl_of(answer: &Upstream) -> Option<u32> {
    let soa_negative_ttl = || {
        answer.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
    };
    match answer.rcode {
        ResponseCode::NoError if !answer.answers.is_empty() => {
            answer.answers.iter().map(|r: &Record| r.ttl).min()
        }
        // NODATA and NXDOMAIN: RFC 2308 section 5.
        ResponseCode::NoError | ResponseCode::NXDomain => soa_negative_ttl(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn positive(ttl: u32) -> Upstream {
        Upstream {
            rcode: ResponseCode::NoError,
            answers: vec![Record::from_rdata(
                name("example.com."),
                ttl,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            )],
            authorities: vec![],
            additionals: vec![],
        }
    }

    fn negative(soa_ttl: u32, minimum: u32) -> Upstream {
        Upstream {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![Record::from_rdata(
                name("example.com."),
                soa_ttl,
                RData::SOA(SOA::new(
                    name("ns.example.com."),
                    name("h.example.com."),
                    1,
                    1,
                    1,
                    1,
                    minimum,
                )),
            )],
            additionals: vec![],
        }
    }

    #[test]
    fn keeps_answers_case_insensitively() {
        let cache = Cache::new(10, 30);
        let served = cache.keep(&name("Example.COM."), RecordType::A, positive(300));
        assert_eq!(served, positive(30), "TTLs capped from the first answer on");
        let hit = cache.get(&name("example.com."), RecordType::A).unwrap();
        assert_eq!(hit, positive(30), "unchanged within the first second");
        assert!(cache.get(&name("example.com."), RecordType::AAAA).is_none());
    }

    #[test]
    fn ttl_is_capped_and_negative_uses_the_soa() {
        assert_eq!(ttl_of(&positive(300)), Some(300));
        assert_eq!(ttl_of(&negative(60, 5)), Some(5));
        assert_eq!(ttl_of(&negative(3, 60)), Some(3));
        let nodata_without_soa = Upstream {
            rcode: ResponseCode::NoError,
            answers: vec![],
            authorities: vec![],
            additionals: vec![],
        };
        assert_eq!(
            ttl_of(&nodata_without_soa),
            None,
            "nothing to go by: not kept"
        );
        let cache = Cache::new(10, 30);
        cache.keep(&name("example.com."), RecordType::A, positive(0));
        assert!(cache.is_empty(), "TTL 0 is never cached");
    }

    #[test]
    fn stays_within_capacity() {
        let cache = Cache::new(3, 30);
        for i in 0..10 {
            cache.keep(
                &name(&format!("n{i}.example.")),
                RecordType::A,
                positive(10 + i),
            );
        }
        assert_eq!(cache.len(), 3);
        // The newest entry is always kept.
        assert!(cache.get(&name("n9.example."), RecordType::A).is_some());
    }
}
