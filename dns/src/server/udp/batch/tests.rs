use std::net::SocketAddr;

use nix::sys::socket::SockaddrStorage;

use super::{GSO_BYTES_MAX, GSO_SEGMENT_MAX, Message, Out, gso_unsupported, plan};

fn out(peers: &[(&str, usize)]) -> Vec<Out> {
    peers
        .iter()
        .enumerate()
        .map(|(at, (peer, len))| {
            let peer: SocketAddr = peer.parse().unwrap();
            Out {
                peer,
                storage: SockaddrStorage::from(peer),
                at,
                len: *len,
            }
        })
        .collect()
}

const A: &str = "127.0.0.1:1000";
const B: &str = "127.0.0.1:2000";

/// Answers to one client of one length become one group, each client's answers in the order
/// of their queries; every other answer goes alone; groups come first, by size.
#[test]
fn answers_to_one_client_of_one_length_are_grouped() {
    let mut o = out(&[
        (B, 50),
        (A, 50),
        (A, 60),
        (B, 50),
        (A, 50),
        (A, 50),
        (B, 70),
    ]);
    let mut messages = Vec::new();
    plan(&mut o, true, &mut messages);
    let sent: Vec<(Vec<usize>, usize)> = messages
        .iter()
        .map(|m| ((m.from..m.to).map(|i| o[i].at).collect(), m.size))
        .collect();
    assert_eq!(
        sent,
        [
            (vec![1, 4, 5], 50),
            (vec![0, 3], 50),
            (vec![2], 60),
            (vec![6], 70),
        ]
    );
    for m in &messages {
        for i in m.from..m.to {
            assert_eq!(o[i].peer, o[m.from].peer, "one client per datagram");
            assert_eq!(o[i].len, m.size);
        }
    }
}

/// Without GSO every answer is its own datagram, in the order of the queries.
#[test]
fn without_gso_each_answer_goes_alone() {
    let mut o = out(&[(B, 50), (A, 50), (A, 50)]);
    let mut messages = Vec::new();
    plan(&mut o, false, &mut messages);
    assert_eq!(
        messages,
        [
            Message {
                from: 0,
                to: 1,
                size: 50
            },
            Message {
                from: 1,
                to: 2,
                size: 50
            },
            Message {
                from: 2,
                to: 3,
                size: 50
            },
        ]
    );
    assert_eq!(o.iter().map(|o| o.at).collect::<Vec<_>>(), [0, 1, 2]);
}

/// Groups stay within GSO's limits: segments that fit any path's MTU, and datagrams within
/// UDP's size.
#[test]
fn groups_stay_within_gso_limits() {
    let mut messages = Vec::new();
    let mut o = out(&[(A, GSO_SEGMENT_MAX + 1); 3]);
    plan(&mut o, true, &mut messages);
    assert_eq!(messages.len(), 3, "too long for a segment: alone");

    let big = 1200;
    let mut o = out(&vec![(A, big); 64]);
    plan(&mut o, true, &mut messages);
    let sizes: Vec<usize> = messages.iter().map(|m| m.to - m.from).collect();
    assert_eq!(sizes, [GSO_BYTES_MAX / big, 64 - GSO_BYTES_MAX / big]);
    assert!(
        messages
            .iter()
            .all(|m| (m.to - m.from) * big <= GSO_BYTES_MAX)
    );
}

#[test]
fn only_a_socket_without_gso_turns_it_off() {
    use nix::errno::Errno;
    for e in [Errno::EIO, Errno::ENOPROTOOPT, Errno::EOPNOTSUPP] {
        assert!(gso_unsupported(e), "{e}");
    }
    // One client's path (segments over its route's MTU): that group alone, GSO kept.
    for e in [Errno::EINVAL, Errno::EMSGSIZE, Errno::EAGAIN] {
        assert!(!gso_unsupported(e), "{e}");
    }
}
