use ferry_model::Snapshot;
use hickory_proto::rr::RecordType;

use super::super::build::compile_within;
use super::super::tests::{cluster, n};
use super::super::{Data, Lookup, MAX_KEY, ZoneIndex, key_of};
use super::{Entry, MAX_ARENA, Records, key_at, push_record, record_len};

fn key(name: &str) -> Vec<u8> {
    let mut buf = [0u8; MAX_KEY];
    key_of(&n(name), &mut buf).unwrap().to_vec()
}

#[test]
fn records_read_back_as_written_with_their_targets_moved() {
    let all = [
        Data::A("10.1.2.3".parse().unwrap()),
        Data::Aaaa("fd00::1".parse().unwrap()),
        Data::Srv {
            weight: 50,
            port: 8080,
            target: 7,
        },
        Data::Ptr(1),
        Data::Cname(2),
        Data::Ns(3),
        Data::Txt,
        Data::Soa,
    ];
    let mut bytes = Vec::new();
    for data in &all {
        let before = bytes.len();
        push_record(&mut bytes, data, |id| id * 1000);
        assert_eq!(bytes.len() - before, record_len(data), "{data:?}");
    }
    let moved: Vec<Data> = all
        .iter()
        .map(|d| match *d {
            Data::Srv {
                weight,
                port,
                target,
            } => Data::Srv {
                weight,
                port,
                target: target * 1000,
            },
            Data::Ptr(t) => Data::Ptr(t * 1000),
            Data::Cname(t) => Data::Cname(t * 1000),
            Data::Ns(t) => Data::Ns(t * 1000),
            other => other,
        })
        .collect();
    assert_eq!(Records(&bytes).collect::<Vec<_>>(), moved);
}

#[test]
fn bytes_that_are_no_entry_read_as_none_never_a_panic() {
    let mut entry = key("web.shop.svc.cluster.local");
    entry.extend_from_slice(&[0, 0, 0, 0, 0, 5, 1, 10, 1, 2, 3]);
    let whole = Entry::at(&entry, 0).unwrap();
    assert_eq!(whole.key, &key("web.shop.svc.cluster.local")[..]);
    assert_eq!(whole.records().count(), 1);
    // Cut anywhere, it is no entry.
    for cut in 0..entry.len() {
        assert!(Entry::at(&entry[..cut], 0).is_none(), "cut at {cut}");
    }
    // Past the end, at the end, in the middle of a label.
    assert!(Entry::at(&entry, u32::MAX).is_none());
    assert!(Entry::at(&entry, entry.len() as u32).is_none());
    assert!(key_at(&[0x40, b'a'], 0).is_none(), "a label longer than 63");
    assert!(key_at(&[0xc0, 0x0c], 0).is_none(), "a pointer");
    // 128 labels of one byte: past the longest name, however the bytes go on.
    let long: Vec<u8> = std::iter::repeat_n([1, b'a'], 128)
        .flatten()
        .chain([0])
        .collect();
    assert!(key_at(&long, 0).is_none());
    // A record of an unknown type, or cut short, ends the records.
    assert_eq!(Records(&[99, 1, 2, 3, 4]).count(), 0);
    assert_eq!(Records(&[1, 10, 0, 0, 1, 28, 0]).count(), 1);
}

#[test]
fn an_empty_cluster_holds_the_apex_names_only() {
    let snapshot = Snapshot {
        version: 1,
        ..Snapshot::default()
    };
    let zone = ZoneIndex::compile(&snapshot, "cluster.local", 30).unwrap();
    // The apex, ns.dns and dns, dns-version, svc, pod.
    assert_eq!(zone.len(), 6);
    assert!(zone.encoded(&key("cluster.local"), 6).is_some(), "SOA");
    assert!(
        zone.encoded(&key("dns-version.cluster.local"), 16)
            .is_some()
    );
    assert!(
        zone.encoded(&key("svc.cluster.local"), 1).is_none(),
        "NODATA"
    );
    assert!(
        zone.encoded(&key("web.shop.svc.cluster.local"), 1)
            .is_none()
    );
    assert_eq!(
        zone.lookup(&n("web.shop.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        zone.lookup(&n("svc.cluster.local."), RecordType::A),
        Lookup::NoData
    );
}

#[test]
fn before_the_first_snapshot_nothing_is_pre_encoded() {
    let zone = ZoneIndex::compile(&Snapshot::default(), "cluster.local", 30).unwrap();
    assert!(zone.encoded(&key("cluster.local"), 6).is_none());
    assert!(
        zone.encoded(&key("dns-version.cluster.local"), 16)
            .is_none()
    );
    assert_eq!(
        zone.lookup(&n("cluster.local."), RecordType::SOA),
        Lookup::NotReady
    );
}

#[test]
fn names_that_do_not_fit_the_arena_refuse_the_zone_naming_why() {
    let err = compile_within(&cluster(), "cluster.local", 30, &[], 200).unwrap_err();
    assert!(err.contains("more than the 200 bytes"), "{err}");
    assert!(err.contains("32-bit"), "{err}");
    assert_eq!(MAX_ARENA, u32::MAX as usize);
}

#[test]
fn answers_that_do_not_fit_leave_every_query_to_the_general_path() {
    let full = ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap();
    // The same names and records, nothing encoded: the arena of a zone not ready yet.
    let unready = Snapshot {
        version: 0,
        ..cluster()
    };
    let bare = compile_within(&unready, "cluster.local", 30, &[], MAX_ARENA).unwrap();
    let limit = bare.arena.len();
    assert!(full.arena.len() > limit);
    let small = compile_within(&cluster(), "cluster.local", 30, &[], limit).unwrap();
    assert_eq!(small.arena.len(), limit);
    assert_eq!(small.len(), full.len());
    let questions = full.encoded_questions();
    assert!(questions.len() > 20);
    for (name, qtype) in questions {
        let k = key(&name.to_ascii());
        assert!(full.encoded(&k, u16::from(qtype)).is_some());
        assert!(small.encoded(&k, u16::from(qtype)).is_none());
        assert_eq!(
            small.lookup(&name, qtype),
            full.lookup(&name, qtype),
            "{name} {qtype}"
        );
    }
}

#[test]
fn every_name_held_is_found_by_its_key_and_no_other() {
    let zone = ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap();
    let mut found = 0;
    for at in zone.table.values() {
        let entry = Entry::at(&zone.arena, at).unwrap();
        assert_eq!(zone.find(entry.key), Some(at));
        found += 1;
    }
    assert_eq!(found, zone.len());
    for absent in [
        "nope.shop.svc.cluster.local",
        "web.shop.svc.cluster.local.shop.svc.cluster.local",
        "eb.shop.svc.cluster.local",
        "cluster",
        "",
    ] {
        assert_eq!(zone.find(&key(absent)), None, "{absent}");
    }
    // A key cut short of its root label, or with bytes after it, is no name's.
    let web = key("web.shop.svc.cluster.local");
    assert!(zone.find(&web).is_some());
    assert_eq!(zone.find(&web[..web.len() - 1]), None);
    assert_eq!(zone.find(&[&web[..], &[0]].concat()), None);
}

#[test]
fn an_alias_target_outside_the_zone_is_no_name_of_it() {
    let zone = ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap();
    let Lookup::Alias { target, .. } =
        zone.lookup(&n("ext.shop.svc.cluster.local."), RecordType::A)
    else {
        panic!("ext is an ExternalName Service");
    };
    let mut buf = [0u8; MAX_KEY];
    let k = key_of(&target, &mut buf).unwrap();
    assert_eq!(zone.find(k), None, "{target}");
    assert_eq!(zone.lookup(&target, RecordType::A), Lookup::Outside);
}
