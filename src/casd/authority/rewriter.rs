//! The client-to-server byte stream of one HTTP/2 connection, with every request's `:authority`
//! replaced by `localhost`.
//!
//! Header blocks (HEADERS plus CONTINUATION frames) are decoded with the client's HPACK context
//! and re-encoded as plain literals that never touch the server's dynamic table, so the two
//! compression contexts can never disagree. Every other frame passes through byte for byte.
//! Anything that is not well-formed HTTP/2 is passed through untouched from there on, for the
//! server to reject as it would have.

use std::borrow::Cow;
use std::fmt;

use loona_hpack::Decoder;

/// What an HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame the server accepts (HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which the
/// daemon does not raise).
const MAX_FRAME: usize = 16_384;
/// The authority every request gets, as gRPC clients that know about Unix sockets send.
const LOCALHOST: &[u8] = b"localhost";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// Reading frames.
    Frames,
    /// Not (or no longer) understood: everything passes through.
    Passthrough,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct Pending {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as received, to pass on untouched if the block turns out malformed.
    raw: Vec<u8>,
}

/// The rewriting state of one connection.
pub struct Rewriter {
    mode: Mode,
    decoder: Decoder<'static>,
    pending: Option<Pending>,
    /// Payload bytes of the current pass-through frame still to come.
    forward: usize,
}

impl fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewriter").field("mode", &self.mode).field("forward", &self.forward).finish()
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        Self { mode: Mode::Preface, decoder: Decoder::new(), pending: None, forward: 0 }
    }
}

impl Rewriter {
    /// Payload bytes that will pass through unchanged before the next frame header: a reader may
    /// hand that many straight to the server, telling [`Rewriter::forwarded`].
    pub fn forwardable(&self) -> usize {
        match self.mode {
            Mode::Passthrough => usize::MAX,
            _ if self.pending.is_some() => 0,
            _ => self.forward,
        }
    }

    /// `n` bytes (at most [`Rewriter::forwardable`]) went straight to the server.
    pub fn forwarded(&mut self, n: usize) {
        if self.mode != Mode::Passthrough {
            self.forward -= n;
        }
    }

    /// Rewrites what it can of `input` into `out`; returns how many bytes of `input` it used (the
    /// rest is an incomplete frame header or header frame, to be offered again with more data).
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            if rest.is_empty() {
                return used;
            }
            match self.mode {
                Mode::Passthrough => {
                    out.extend_from_slice(rest);
                    return input.len();
                }
                Mode::Preface => {
                    let n = rest.len().min(PREFACE.len());
                    if rest[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                    } else if n < PREFACE.len() {
                        return used;
                    } else {
                        out.extend_from_slice(PREFACE);
                        used += PREFACE.len();
                        self.mode = Mode::Frames;
                    }
                }
                Mode::Frames if self.forward > 0 && self.pending.is_none() => {
                    let n = rest.len().min(self.forward);
                    out.extend_from_slice(&rest[..n]);
                    self.forward -= n;
                    used += n;
                }
                Mode::Frames => match self.frame(rest, out) {
                    Some(n) => used += n,
                    None => return used,
                },
            }
        }
    }

    /// Handles the frame at the start of `input`; `None` if more bytes are needed.
    fn frame(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let header = input.get(..FRAME_HEADER)?;
        let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream: [u8; 4] = header[5..9].try_into().expect("four bytes");
        let is_header_frame = kind == HEADERS || kind == CONTINUATION;
        if self.pending.is_some() != (kind == CONTINUATION) || (is_header_frame && length > MAX_FRAME) {
            // A header block interrupted, a stray CONTINUATION, or an oversized header frame:
            // the server will refuse the connection; let it see exactly what the client sent.
            self.give_up(out);
            return Some(0);
        }
        if !is_header_frame {
            out.extend_from_slice(header);
            self.forward = length;
            return Some(FRAME_HEADER);
        }
        let frame = input.get(..FRAME_HEADER + length)?;
        let payload = &frame[FRAME_HEADER..];
        let fragment = if kind == HEADERS {
            let Some((fragment, priority)) = headers_fragment(payload, flags) else {
                out.extend_from_slice(frame);
                self.mode = Mode::Passthrough;
                return Some(frame.len());
            };
            self.pending = Some(Pending { stream, flags, priority, block: Vec::new(), raw: Vec::new() });
            fragment
        } else {
            payload
        };
        let pending = self.pending.as_mut().expect("a header block is open");
        if pending.stream != stream {
            self.give_up(out);
            return Some(0);
        }
        pending.block.extend_from_slice(fragment);
        pending.raw.extend_from_slice(frame);
        if flags & END_HEADERS != 0 {
            let pending = self.pending.take().expect("a header block is open");
            self.finish_block(pending, out);
        }
        Some(frame.len())
    }

    /// Re-encodes a complete header block with `localhost` as its authority.
    fn finish_block(&mut self, pending: Pending, out: &mut Vec<u8>) {
        let mut block = Vec::with_capacity(pending.block.len() * 2);
        let decoded = self.decoder.decode_with_cb(&pending.block, |name: Cow<[u8]>, value: Cow<[u8]>| {
            let value = if name.as_ref() == b":authority" { LOCALHOST } else { value.as_ref() };
            encode_literal(&name, value, &mut block);
        });
        if decoded.is_err() {
            out.extend_from_slice(&pending.raw);
            self.mode = Mode::Passthrough;
            return;
        }
        write_header_frames(&pending, &block, out);
    }

    /// Passes an open header block on as received and stops rewriting.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        if let Some(pending) = self.pending.take() {
            out.extend_from_slice(&pending.raw);
        }
        self.mode = Mode::Passthrough;
    }
}

/// The header block fragment of a HEADERS payload and its priority fields, without padding.
fn headers_fragment(payload: &[u8], flags: u8) -> Option<(&[u8], Option<[u8; 5]>)> {
    let (pad, mut rest) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(rest.get(..5)?.try_into().expect("five bytes"));
        rest = &rest[5..];
    }
    let end = rest.len().checked_sub(pad)?;
    Some((&rest[..end], priority))
}

/// HEADERS (keeping END_STREAM and the priority fields) and as many CONTINUATION frames as the
/// block needs.
fn write_header_frames(pending: &Pending, block: &[u8], out: &mut Vec<u8>) {
    let priority: &[u8] = pending.priority.as_ref().map_or(&[], |p| &p[..]);
    let first = block.len().min(MAX_FRAME - priority.len());
    let mut flags = pending.flags & (END_STREAM | PRIORITY);
    if first == block.len() {
        flags |= END_HEADERS;
    }
    frame_header(priority.len() + first, HEADERS, flags, pending.stream, out);
    out.extend_from_slice(priority);
    out.extend_from_slice(&block[..first]);
    let mut chunks = block[first..].chunks(MAX_FRAME).peekable();
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { END_HEADERS } else { 0 };
        frame_header(chunk.len(), CONTINUATION, flags, pending.stream, out);
        out.extend_from_slice(chunk);
    }
}

fn frame_header(length: usize, kind: u8, flags: u8, stream: [u8; 4], out: &mut Vec<u8>) {
    let length = u32::try_from(length).expect("frames are at most 16 KiB").to_be_bytes();
    out.extend_from_slice(&length[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream);
}

/// A "literal header field without indexing, new name" (RFC 7541 §6.2.2), no Huffman coding.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    encode_string(name, out);
    encode_string(value, out);
}

fn encode_string(text: &[u8], out: &mut Vec<u8>) {
    encode_integer(text.len(), 7, 0x00, out);
    out.extend_from_slice(text);
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1); `high` holds the bits above it.
fn encode_integer(mut value: usize, prefix: u8, high: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
#[path = "rewriter_tests.rs"]
mod tests;
