use super::*;
use loona_hpack::Encoder;

/// One frame as parsed back from the rewriter's output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame_header(payload.len(), kind, flags, stream.to_be_bytes(), &mut out);
    out.extend_from_slice(payload);
    out
}

fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    assert!(bytes.starts_with(PREFACE), "the preface comes first");
    bytes = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let length = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
        assert!(length <= MAX_FRAME, "frame of {length} bytes");
        frames.push(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream,
            payload: bytes[9..9 + length].to_vec(),
        });
        bytes = &bytes[9 + length..];
    }
    frames
}

/// Header lists of the output's header blocks (decoded as the server would), and the other frames.
fn decode_output(out: &[u8]) -> (Vec<Vec<(String, String)>>, Vec<Frame>) {
    let mut decoder = Decoder::new();
    let (mut blocks, mut others, mut block) = (Vec::new(), Vec::new(), Vec::new());
    for frame in parse_frames(out) {
        match frame.kind {
            HEADERS | CONTINUATION => {
                let mut payload = &frame.payload[..];
                if frame.kind == HEADERS && frame.flags & PRIORITY != 0 {
                    payload = &payload[5..];
                }
                assert_eq!(frame.flags & PADDED, 0);
                block.extend_from_slice(payload);
                if frame.flags & END_HEADERS != 0 {
                    let headers = decoder.decode(&block).unwrap();
                    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
                    blocks.push(headers.into_iter().map(|(n, v)| (text(n), text(v))).collect());
                    block.clear();
                }
            }
            _ => others.push(frame),
        }
    }
    (blocks, others)
}

/// Feeds `input` in chunks of `chunk` bytes, as reads would deliver it.
fn rewrite(input: &[u8], chunk: usize) -> Vec<u8> {
    let mut rewriter = Rewriter::default();
    let (mut out, mut buffered) = (Vec::new(), Vec::new());
    for piece in input.chunks(chunk) {
        buffered.extend_from_slice(piece);
        let used = rewriter.process(&buffered, &mut out);
        buffered.drain(..used);
    }
    assert!(buffered.is_empty(), "{} bytes left unprocessed", buffered.len());
    out
}

fn grpc_request(path: &str) -> Vec<(&'static [u8], Vec<u8>)> {
    vec![
        (b":method", b"POST".to_vec()),
        (b":scheme", b"http".to_vec()),
        (b":path", path.as_bytes().to_vec()),
        (b":authority", b"%2Ftmp%2Fbuildstream%2Fcasd.sock".to_vec()),
        (b"content-type", b"application/grpc".to_vec()),
        (b"te", b"trailers".to_vec()),
    ]
}

fn encode(encoder: &mut Encoder, headers: &[(&'static [u8], Vec<u8>)]) -> Vec<u8> {
    encoder.encode(headers.iter().map(|(n, v)| (*n, &v[..])))
}

#[test]
fn authority_becomes_localhost_and_everything_else_is_kept() {
    let mut encoder = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])); // SETTINGS
    let first = grpc_request("/build.buildgrid.LocalContentAddressableStorage/GetLocalDiskUsage");
    input.extend(frame(HEADERS, END_HEADERS, 1, &encode(&mut encoder, &first)));
    input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\x05hello"));
    // The second request's fields are mostly indexed in the client's dynamic table.
    let second = grpc_request("/build.buildgrid.LocalContentAddressableStorage/GetLocalServerDetails");
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &encode(&mut encoder, &second)));
    let expected = |request: &[(&[u8], Vec<u8>)]| -> Vec<(String, String)> {
        request
            .iter()
            .map(|(n, v)| {
                let n = String::from_utf8(n.to_vec()).unwrap();
                let v = if n == ":authority" {
                    "localhost".to_owned()
                } else {
                    String::from_utf8(v.clone()).unwrap()
                };
                (n, v)
            })
            .collect()
    };
    for chunk in [1, 7, 64, input.len()] {
        let (blocks, others) = decode_output(&rewrite(&input, chunk));
        assert_eq!(blocks, [expected(&first), expected(&second)], "chunks of {chunk}");
        assert_eq!(others.len(), 2);
        assert_eq!(others[0], Frame { kind: 0x4, flags: 0, stream: 0, payload: vec![0, 3, 0, 0, 0, 100] });
        assert_eq!(others[1].payload, b"\0\0\0\0\x05hello");
        assert_eq!(others[1].flags, END_STREAM);
    }
    let frames = parse_frames(&rewrite(&input, 5));
    let second_headers = frames.iter().find(|f| f.kind == HEADERS && f.stream == 3).unwrap();
    assert_eq!(second_headers.flags, END_HEADERS | END_STREAM, "END_STREAM is kept");
}

#[test]
fn huffman_coded_and_indexed_authorities_from_rfc_7541() {
    // RFC 7541 C.4.1 and C.4.2: two requests; the second refers to the first's authority
    // ("www.example.com", Huffman-coded) through the dynamic table.
    let first = const_hex::decode("828684418cf1e3c2e5f23a6ba0ab90f4ff").unwrap();
    let second = const_hex::decode("828684be5886a8eb10649cbf").unwrap();
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &first));
    input.extend(frame(HEADERS, END_HEADERS, 3, &second));
    let (blocks, _) = decode_output(&rewrite(&input, 3));
    let pairs =
        |block: &Vec<(String, String)>| block.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>();
    assert_eq!(pairs(&blocks[0]), [":method=GET", ":scheme=http", ":path=/", ":authority=localhost"]);
    assert_eq!(
        pairs(&blocks[1]),
        [":method=GET", ":scheme=http", ":path=/", ":authority=localhost", "cache-control=no-cache"]
    );
}

#[test]
fn continuation_padding_and_priority_are_handled() {
    let mut encoder = Encoder::new();
    let block = encode(&mut encoder, &grpc_request("/a/b"));
    let (head, tail) = block.split_at(10);
    // HEADERS with 3 bytes of padding and priority fields, then a CONTINUATION.
    let mut payload = vec![3];
    payload.extend_from_slice(&[0x80, 0, 0, 0, 15]);
    payload.extend_from_slice(head);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &payload));
    input.extend(frame(CONTINUATION, END_HEADERS, 5, tail));
    let out = rewrite(&input, 4);
    let frames = parse_frames(&out);
    assert_eq!(frames.len(), 1, "one HEADERS frame carries the whole block");
    assert_eq!(frames[0].flags, PRIORITY | END_STREAM | END_HEADERS);
    assert_eq!(frames[0].payload[..5], [0x80, 0, 0, 0, 15]);
    let (blocks, _) = decode_output(&out);
    assert!(blocks[0].contains(&(":authority".to_owned(), "localhost".to_owned())));
    assert!(blocks[0].contains(&(":path".to_owned(), "/a/b".to_owned())));
}

#[test]
fn a_block_larger_than_a_frame_is_split_into_continuations() {
    let mut encoder = Encoder::new();
    let mut request = grpc_request("/a/b");
    let big = vec![b'x'; 40_000];
    request.push((b"x-big", big.clone()));
    let block = encode(&mut encoder, &request);
    let mut input = PREFACE.to_vec();
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { END_HEADERS } else { 0 };
        input.extend(frame(kind, flags, 1, chunk));
        kind = CONTINUATION;
    }
    let out = rewrite(&input, 1000);
    let kinds: Vec<u8> = parse_frames(&out).iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [HEADERS, CONTINUATION, CONTINUATION]);
    let (blocks, _) = decode_output(&out);
    assert_eq!(blocks[0].last().unwrap().1.len(), big.len());
}

#[test]
fn what_is_not_http2_or_is_malformed_passes_through_untouched() {
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(rewrite(&http1, 3), http1);

    // A header block that is not valid HPACK (index 70 is in no table).
    let mut bad = PREFACE.to_vec();
    bad.extend(frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]));
    bad.extend(frame(0x0, 0, 1, b"data"));
    assert_eq!(rewrite(&bad, 2), bad);

    // A stray CONTINUATION.
    let mut stray = PREFACE.to_vec();
    stray.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    assert_eq!(rewrite(&stray, 100), stray);
}

#[test]
fn payloads_can_be_forwarded_without_buffering() {
    let mut rewriter = Rewriter::default();
    let mut out = Vec::new();
    let mut input = PREFACE.to_vec();
    input.extend(&frame(0x0, 0, 1, &[7u8; 1000])[..FRAME_HEADER]);
    assert_eq!(rewriter.process(&input, &mut out), input.len());
    assert_eq!(rewriter.forwardable(), 1000);
    rewriter.forwarded(600);
    assert_eq!(rewriter.forwardable(), 400);
    assert_eq!(rewriter.process(&[7u8; 400], &mut out), 400);
    assert_eq!(rewriter.forwardable(), 0);
}

#[test]
fn integers_use_the_hpack_prefix_encoding() {
    // RFC 7541 C.1.1-C.1.2: 10 and 1337 with a 5-bit prefix.
    let mut out = Vec::new();
    encode_integer(10, 5, 0, &mut out);
    assert_eq!(out, [10]);
    out.clear();
    encode_integer(1337, 5, 0, &mut out);
    assert_eq!(out, [31, 154, 10]);
}
