//! The HTTP/1 codec (issue 18) on a typical ingress request head: parse, decide its framing,
//! write the edited head upstream (hop-by-hop out, forwarding headers and `Via` in), in the
//! reused buffers a connection keeps; against the header edit the hyper path does for the
//! same head (a `HeaderMap` built from it and `forwarding_headers`, hyper's own parse not
//! counted), and httparse alone as the floor. And a chunked body of 64 KiB in 4 KiB chunks
//! delimited.
//!
//! Allocations per request are counted in `proxy/tests/h1_alloc.rs` (dhat), apart from
//! criterion's own.
//!
//! `cargo bench -p ferry-proxy --bench h1_codec`

#![allow(clippy::unwrap_used)] // fixed inputs: a failed unwrap is a broken bench

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_proxy::forwarding::{Downstream, RequestIds, Via, forwarding_headers};
use ferry_proxy::h1::write::{Edit, request_head};
use ferry_proxy::h1::{Body, Delimiter, Limits, Parser, framing};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// What a browser sends through an ingress: 9 fields, 480 bytes.
const HEAD: &[u8] = b"GET /api/v1/products?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=3f2a9c1e8b7d4a6f; theme=dark\r\n\
Referer: https://shop.example.com/catalog\r\n\
Connection: keep-alive\r\n\
X-Forwarded-For: 192.0.2.1\r\n\r\n";

fn codec(c: &mut Criterion) {
    let down = Downstream::new(
        "10.0.0.7:5555".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
        false,
    );
    let (ids, via) = (RequestIds::new(), Via::new());
    let mut group = c.benchmark_group("h1_codec");
    group.throughput(Throughput::Elements(1));
    let mut parser = Parser::requests(Limits::default());
    let mut out = Vec::with_capacity(1024);
    group.bench_function("parse_frame_edit_write", |b| {
        b.iter(|| {
            let head = parser.request(black_box(HEAD)).unwrap().unwrap();
            let framing = framing::request(&head).unwrap();
            let edit = Edit {
                target: head.target.as_bytes(),
                host: b"shop.example.com",
                framing: &framing,
            };
            let id = request_head(&mut out, &head, &edit, &down, &ids, &via);
            black_box((&out, id));
        })
    });
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            let head = parser.request(black_box(HEAD)).unwrap().unwrap();
            black_box(head.len);
        })
    });
    // The floor: httparse alone on the same head (no limits, no bare-LF scan, no views).
    group.bench_function("httparse_alone", |b| {
        b.iter(|| {
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut fields);
            let parsed = req.parse(black_box(HEAD)).unwrap();
            black_box((parsed, req.headers.len()));
        })
    });
    // The hyper path's header edit of the same head (hyper's parse into the map not counted).
    group.bench_function("hyper_path_headermap_edit", |b| {
        let host = HeaderValue::from_static("shop.example.com");
        let mut fields = Vec::new();
        {
            let head = parser.request(HEAD).unwrap().unwrap();
            for f in head.fields.iter() {
                fields.push((
                    HeaderName::from_bytes(f.name).unwrap(),
                    HeaderValue::from_bytes(f.value).unwrap(),
                ));
            }
        }
        b.iter(|| {
            let mut headers = HeaderMap::with_capacity(fields.len() + 8);
            for (name, value) in &fields {
                headers.append(name.clone(), value.clone());
            }
            let id = forwarding_headers(&mut headers, &host, &down, &ids);
            headers.append(http::header::VIA, via.value(http::Version::HTTP_11));
            black_box((headers, id));
        })
    });
    group.finish();

    let mut chunked = Vec::new();
    for _ in 0..16 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'x'; 4096]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("h1_body");
    group.throughput(Throughput::Bytes(chunked.len() as u64));
    group.bench_function("chunked_64k_in_4k_chunks", |b| {
        b.iter(|| {
            let mut d = Delimiter::new(Body::Chunked);
            let step = d.feed(black_box(&chunked)).unwrap();
            assert!(step.done);
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
