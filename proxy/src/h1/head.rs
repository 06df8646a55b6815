//! Request and response heads parsed in place with `httparse`, into views that borrow the
//! caller's buffer: the start line's parts and the header fields as slices of it. The field
//! positions live in a [`Parser`] kept per connection, so once it is warm a head costs no
//! allocation.
//!
//! The bytes of a head are looked at once as they arrive: each new read is scanned for line
//! ends, so a bare LF (RFC 9112 section 2.2), a folded field line (obs-fold, section 5.2) and
//! a request target past [`Limits::target`] are refused as soon as they come, and `httparse`
//! runs only once the empty line that ends the head is there (a head sent a byte at a time
//! costs no parse per byte). `httparse` then refuses what else is not HTTP/1: control
//! characters (NUL, a lone CR, ...) in values, a bad name or whitespace before the colon.
//!
//! What it may touch: the bytes it is handed, nothing else.

use std::mem::MaybeUninit;

use http::Version;

use super::Malformed;
use super::names::Name;

/// The most header fields in a head (hyper's default, which the gateway keeps: 431 past it).
pub const MAX_FIELDS: usize = 100;
/// The longest request target (nginx's 8 KiB request line buffer, the gateway's 414).
pub const MAX_TARGET: usize = 8 * 1024;
/// The largest head (the gateway's listener limit, 431 past it).
pub const MAX_HEAD: usize = 64 * 1024;

/// How large a head may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole head, its start line and empty line included.
    pub head_bytes: usize,
    /// The request target (ignored for responses).
    pub target: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_bytes: MAX_HEAD,
            target: MAX_TARGET,
        }
    }
}

/// Where one field's name and value lie in the head.
#[derive(Clone, Copy, Debug)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
    /// The name, recognised once as the head is parsed.
    known: Name,
}

/// How far the request line's target has been looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Still in the method (or in empty lines before the request line).
    Method,
    /// The target started at this offset.
    From(usize),
    /// The target ended, or this is a response.
    Done,
}

/// What is known of the head arriving in the buffer.
#[derive(Clone, Copy, Debug)]
struct Scan {
    /// Bytes looked at so far.
    at: usize,
    /// Where the current line starts.
    line_start: usize,
    /// The start line has ended (empty lines before it do not count).
    started: bool,
    target: Target,
}

impl Scan {
    fn new(request: bool) -> Scan {
        Scan {
            at: 0,
            line_start: 0,
            started: false,
            target: if request {
                Target::Method
            } else {
                Target::Done
            },
        }
    }
}

/// Parses the heads of one connection, one direction, in turn; keeps the field positions
/// of the last head between calls so their memory is reused.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    request: bool,
    scan: Scan,
    /// Where the head [`Parser::ready`] found ends: the next parse takes it without a scan.
    ended: Option<usize>,
    spans: Vec<Span>,
}

/// One header field, as it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The name, if the codec acts on it.
    pub(crate) known: Name,
}

impl Field<'_> {
    /// Whether its name is `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The header fields of a head, in their order, borrowed from its buffer.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    head: &'a [u8],
    spans: &'a [Span],
}

impl<'a> Fields<'a> {
    pub fn iter(&self) -> impl Iterator<Item = Field<'a>> + use<'a> {
        let head = self.head;
        self.spans.iter().map(move |s| Field {
            name: &head[s.name.0..s.name.1],
            value: &head[s.value.0..s.value.1],
            known: s.known,
        })
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|f| f.is(name)).map(|f| f.value)
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A request head, borrowed from the buffer it was parsed in.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: Version,
    /// The head's bytes, its empty line included: the body (or the next head) starts here.
    pub len: usize,
    pub fields: Fields<'a>,
}

/// A response head, borrowed from the buffer it was parsed in.
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead<'a> {
    pub version: Version,
    pub status: u16,
    pub reason: &'a str,
    pub len: usize,
    pub fields: Fields<'a>,
}

impl Parser {
    /// A parser of request heads.
    pub fn requests(limits: Limits) -> Parser {
        Parser::new(limits, true)
    }

    /// A parser of response heads.
    pub fn responses(limits: Limits) -> Parser {
        Parser::new(limits, false)
    }

    fn new(limits: Limits, request: bool) -> Parser {
        Parser {
            limits,
            request,
            scan: Scan::new(request),
            ended: None,
            spans: Vec::with_capacity(16),
        }
    }

    /// Forgets a head in progress: the next call starts a new one.
    pub fn reset(&mut self) {
        self.scan = Scan::new(self.request);
        self.ended = None;
    }

    /// Whether the whole head is at the start of `buf` yet: its length once it is, and then
    /// the next [`Parser::request`] or [`Parser::response`] on the same bytes parses it
    /// without looking for its end again. A reader waits with this for a head (it borrows
    /// nothing), then parses it. Refuses what [`Parser::request`] refuses while scanning.
    pub fn ready(&mut self, buf: &[u8]) -> Result<Option<usize>, Malformed> {
        let end = self.end(buf)?;
        self.ended = end;
        Ok(end)
    }

    /// The request head at the start of `buf` (the bytes read since the last head ended),
    /// once it is all there: `None` while it is not. Call again with the same bytes and more
    /// after them; after a head, the next call starts at a new one.
    pub fn request<'a>(&'a mut self, buf: &'a [u8]) -> Result<Option<RequestHead<'a>>, Malformed> {
        debug_assert!(self.request, "a response parser asked for a request");
        let Some(end) = self.end(buf)? else {
            return Ok(None);
        };
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(&buf[..end], &mut fields);
        let len = complete(parsed, end)?;
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Err(Malformed::StartLine);
        };
        record(&mut self.spans, buf, req.headers);
        Ok(Some(RequestHead {
            method,
            target,
            version: version_of(version),
            len,
            fields: Fields {
                head: &buf[..len],
                spans: &self.spans,
            },
        }))
    }

    /// The response head at the start of `buf`, as [`Parser::request`].
    pub fn response<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> Result<Option<ResponseHead<'a>>, Malformed> {
        debug_assert!(!self.request, "a request parser asked for a response");
        let Some(end) = self.end(buf)? else {
            return Ok(None);
        };
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            &buf[..end],
            &mut fields,
        );
        let len = complete(parsed, end)?;
        let (Some(version), Some(status)) = (res.version, res.code) else {
            return Err(Malformed::StartLine);
        };
        record(&mut self.spans, buf, res.headers);
        Ok(Some(ResponseHead {
            version: version_of(version),
            status,
            reason: res.reason.unwrap_or_default(),
            len,
            fields: Fields {
                head: &buf[..len],
                spans: &self.spans,
            },
        }))
    }

    /// Looks at the bytes of `buf` not looked at before: where the head ends (past its empty
    /// line), once it has; a refusal as soon as one is certain.
    fn end(&mut self, buf: &[u8]) -> Result<Option<usize>, Malformed> {
        if let Some(end) = self.ended.take()
            && end <= buf.len()
        {
            return Ok(Some(end));
        }
        let result = self.scan_to_end(buf);
        if !matches!(result, Ok(None)) {
            // A head ended (or was refused): the next call starts a new one.
            self.reset();
        }
        result
    }

    fn scan_to_end(&mut self, buf: &[u8]) -> Result<Option<usize>, Malformed> {
        let scan = &mut self.scan;
        while scan.at < buf.len() {
            let at = scan.at;
            // A line that starts with whitespace continues the one before it: obs-fold.
            if at == scan.line_start && scan.started && matches!(buf[at], b' ' | b'\t') {
                return Err(Malformed::ObsFold);
            }
            let lf = find_lf(&buf[at..]).map(|p| at + p);
            if !scan.started {
                target(
                    scan,
                    &buf[at..lf.unwrap_or(buf.len())],
                    at,
                    self.limits.target,
                )?;
            }
            let Some(lf) = lf else {
                scan.at = buf.len();
                break;
            };
            if lf == 0 || buf[lf - 1] != b'\r' {
                return Err(Malformed::BareLf);
            }
            let empty = lf - 1 == scan.line_start;
            scan.at = lf + 1;
            scan.line_start = lf + 1;
            if lf + 1 > self.limits.head_bytes {
                return Err(Malformed::HeadTooLarge);
            }
            if !empty {
                scan.started = true;
                scan.target = Target::Done;
            } else if scan.started {
                return Ok(Some(lf + 1));
            }
        }
        if buf.len() > self.limits.head_bytes {
            return Err(Malformed::HeadTooLarge);
        }
        Ok(None)
    }
}

/// Where the first LF in `bytes` is (memchr: vectorised, 32 bytes at a time).
fn find_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Follows the request line's target through `bytes` (the start line's next bytes, at
/// `offset` in the head): refuses it once it passes `limit`.
fn target(scan: &mut Scan, bytes: &[u8], offset: usize, limit: usize) -> Result<(), Malformed> {
    let mut from = 0;
    if scan.target == Target::Method {
        let Some(space) = bytes.iter().position(|&b| b == b' ') else {
            return Ok(());
        };
        scan.target = Target::From(offset + space + 1);
        from = space + 1;
    }
    if let Target::From(start) = scan.target {
        let rest = &bytes[from..];
        let len = match rest.iter().position(|&b| matches!(b, b' ' | b'\r')) {
            Some(end) => {
                scan.target = Target::Done;
                offset + from + end - start
            }
            None => offset + bytes.len() - start,
        };
        if len > limit {
            return Err(Malformed::TargetTooLong);
        }
    }
    Ok(())
}

/// The head's length from `httparse`'s verdict on the bytes up to its empty line (`end`).
fn complete(parsed: httparse::Result<usize>, end: usize) -> Result<usize, Malformed> {
    match parsed {
        Ok(httparse::Status::Complete(len)) if len == end => Ok(len),
        // The scan found the empty line; httparse must agree on where it is.
        Ok(_) => Err(Malformed::StartLine),
        Err(httparse::Error::TooManyHeaders) => Err(Malformed::TooManyFields),
        Err(httparse::Error::HeaderName) => Err(Malformed::FieldName),
        Err(httparse::Error::HeaderValue) => Err(Malformed::ControlInField),
        Err(
            httparse::Error::Token
            | httparse::Error::Version
            | httparse::Error::Status
            | httparse::Error::NewLine,
        ) => Err(Malformed::StartLine),
    }
}

/// Notes where each field lies in `buf`, in the reused `spans`.
fn record(spans: &mut Vec<Span>, buf: &[u8], fields: &[httparse::Header<'_>]) {
    let base = buf.as_ptr() as usize;
    // httparse's slices all lie in `buf`; clamped all the same, so a view never panics.
    let range = |s: &[u8]| {
        let start = (s.as_ptr() as usize).saturating_sub(base).min(buf.len());
        (start, (start + s.len()).min(buf.len()))
    };
    spans.clear();
    spans.extend(fields.iter().map(|f| Span {
        name: range(f.name.as_bytes()),
        value: range(f.value),
        known: Name::of(f.name.as_bytes()),
    }));
}

fn version_of(minor: u8) -> Version {
    if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

#[cfg(test)]
mod tests;
