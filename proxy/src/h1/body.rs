//! A body delimited as it passes through: the [`Delimiter`] is shown each read and says how
//! many of its bytes belong to the body and whether the body ended with them. It never copies
//! or changes a byte: a chunked body goes on chunked, exactly as it came, only validated. For
//! an HTTP/1.0 client, which cannot read chunks, [`Delimiter::unframe`] says which bytes are
//! the chunks' content, to be passed on without the framing.
//!
//! The chunked coding (RFC 9112 section 7.1) is followed byte by byte through its framing and
//! in bulk through chunk data, as hyper's decoder reads it: hex sizes that fit in 64 bits,
//! whitespace after the size, extensions up to 16 KiB per body (hyper's limit), every line
//! ended by CRLF (a bare LF refused), then a trailer section of valid field lines up to
//! 16 KiB (hyper's limit), obs-fold refused. Pure: no I/O.

use super::Malformed;
use super::framing::Body;

/// The chunk extensions one body may carry (hyper's `CHUNKED_EXTENSIONS_LIMIT`).
pub const MAX_EXTENSIONS: u64 = 16 * 1024;
/// The largest trailer section (hyper's `TRAILER_LIMIT`).
pub const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A body of known length: this many bytes left.
    Length(u64),
    UntilClose,
    /// Before a chunk size's first digit.
    SizeStart,
    /// In a chunk size's digits.
    Size,
    /// Whitespace after the size.
    SizeWs,
    /// A chunk extension, up to the line's CR.
    Extension,
    /// The LF of a chunk-size line.
    SizeLf,
    /// In a chunk's data: this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// At the start of a trailer field line, or of the empty line that ends the body.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The LF of the empty line that ends the body.
    EndLf,
    Done,
}

/// Follows one body's framing through the bytes that carry it.
#[derive(Clone, Debug)]
pub struct Delimiter {
    state: State,
    /// The size of the chunk whose size line is being read.
    size: u64,
    extensions: u64,
    trailers: usize,
    /// The body's content so far: a length's bytes, or the chunks' data without framing.
    data: u64,
}

/// The next run of a body passed on without its chunked framing: `skip` bytes of framing,
/// then `data` bytes of content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub skip: usize,
    pub data: usize,
    /// The body ended with them: what follows is the next message.
    pub done: bool,
}

/// What one read held of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The bytes of the read that belong to the body (all of them unless it ended).
    pub used: usize,
    /// The body ended with them: what follows is the next message.
    pub done: bool,
}

impl Delimiter {
    pub fn new(body: Body) -> Delimiter {
        let state = match body {
            Body::Empty | Body::Length(0) => State::Done,
            Body::Length(n) => State::Length(n),
            Body::Chunked => State::SizeStart,
            Body::UntilClose => State::UntilClose,
        };
        Delimiter {
            state,
            size: 0,
            extensions: 0,
            trailers: 0,
            data: 0,
        }
    }

    /// The content bytes seen so far (a chunked body's data, its framing not counted): what a
    /// body-size limit is held against.
    pub fn data(&self) -> u64 {
        self.data
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The connection ended: fine only where the body has ended, or ends with it.
    pub fn finish(&self) -> Result<(), Malformed> {
        match self.state {
            State::Done | State::UntilClose => Ok(()),
            _ => Err(Malformed::Truncated),
        }
    }

    /// The next bytes read: how many belong to the body, and whether it ended with them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Step, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Done => break,
                State::UntilClose => i = bytes.len(),
                State::Length(left) | State::Data(left) => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += n;
                    self.data += n as u64;
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), left) => State::Length(left),
                        (_, 0) => State::DataCr,
                        (_, left) => State::Data(left),
                    };
                }
                _ => {
                    self.byte(bytes[i])?;
                    i += 1;
                }
            }
        }
        Ok(Step {
            used: i,
            done: self.state == State::Done,
        })
    }

    /// The next run of `bytes` as [`Delimiter::feed`] follows them, split into framing to
    /// drop and content to pass on (all of a length's or an until-close body's bytes are
    /// content). Call again with the bytes after the run.
    pub fn unframe(&mut self, bytes: &[u8]) -> Result<Run, Malformed> {
        let mut i = 0;
        loop {
            let run = |data, done| Run {
                skip: i,
                data,
                done,
            };
            match self.state {
                State::Done => return Ok(run(0, true)),
                State::UntilClose => return Ok(run(bytes.len() - i, false)),
                State::Length(left) | State::Data(left) => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    let step = self.feed(&bytes[i..i + n])?;
                    return Ok(run(step.used, step.done));
                }
                _ if i == bytes.len() => return Ok(run(0, false)),
                _ => {
                    self.byte(bytes[i])?;
                    i += 1;
                }
            }
        }
    }

    /// One byte of the chunked framing.
    fn byte(&mut self, b: u8) -> Result<(), Malformed> {
        use State::*;
        self.state = match (self.state, b) {
            (SizeStart | Size, _) if b.is_ascii_hexdigit() => {
                let digit = (b as char).to_digit(16).unwrap_or(0);
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(digit)))
                    .ok_or(Malformed::BadChunk)?;
                Size
            }
            (Size | SizeWs, b' ' | b'\t') => SizeWs,
            (Size | SizeWs, b';') => Extension,
            (Size | SizeWs | Extension, b'\r') => SizeLf,
            (Extension, b'\t' | b' '..=0x7e | 0x80..=0xff) => {
                self.extensions += 1;
                if self.extensions > MAX_EXTENSIONS {
                    return Err(Malformed::BadChunk);
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => TrailerStart,
            (SizeLf, b'\n') => Data(std::mem::take(&mut self.size)),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, _) if is_token(b) => self.trailer(TrailerName)?,
            (TrailerName, b':') => self.trailer(TrailerValue)?,
            (TrailerValue, b'\t' | b' '..=0x7e | 0x80..=0xff) => self.trailer(TrailerValue)?,
            (TrailerValue, b'\r') => self.trailer(TrailerLf)?,
            (TrailerLf, b'\n') => self.trailer(TrailerStart)?,
            (EndLf, b'\n') => Done,
            // A bare LF, a control character, obs-fold, a size with no digits, ...
            _ => return Err(Malformed::BadChunk),
        };
        Ok(())
    }

    /// One more byte of the trailer section, within its limit.
    fn trailer(&mut self, next: State) -> Result<State, Malformed> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(Malformed::BadChunk);
        }
        Ok(next)
    }
}

/// A field name's characters (RFC 9110 section 5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
