//! FindMissingBlobs' request and response, decoded and encoded by hand straight between the wire
//! and [`Digest`]s, and the gRPC codec that does it.
//!
//! The generated types give each hash a `String`: a 100k-digest request (7 MB) costs 100k
//! allocations, a UTF-8 check and a copy per hash, then a second pass to parse the hex, and the
//! answer is encoded back from those strings. Here a digest is parsed where it lies in the
//! received buffer and the answer is hex-encoded from the parsed digests. Field numbers are
//! REAPI's (`remote_execution.proto`); unknown fields are skipped, as prost does.
//!
//! A digest that does not parse is not a decoding error: the request keeps the first one, so
//! that the call can refuse it by its index after checking the instance, as the other calls do.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, decode_varint, encode_key, encode_varint,
    encoded_len_varint, int32, key_len, skip_field, string,
};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::digest::{Digest, DigestError};

/// `FindMissingBlobsRequest` fields.
const REQUEST_INSTANCE_NAME: u32 = 1;
const REQUEST_BLOB_DIGESTS: u32 = 2;
const REQUEST_DIGEST_FUNCTION: u32 = 3;
/// `FindMissingBlobsResponse.missing_blob_digests`.
const RESPONSE_MISSING: u32 = 2;
/// `Digest.hash` and `Digest.size_bytes`.
const DIGEST_HASH: u32 = 1;
const DIGEST_SIZE: u32 = 2;

/// Bytes a SHA-256 `Digest` entry takes in a request (tag, length, hash field, size field): used
/// to reserve room for all of them when the first arrives, instead of growing the list by copies.
const TYPICAL_ENTRY_BYTES: usize = 72;

/// `build.bazel.remote.execution.v2.FindMissingBlobsRequest`, its digests parsed.
#[derive(Debug, Default, PartialEq)]
pub struct FindMissingRequest {
    /// `instance_name`.
    pub instance_name: String,
    /// `blob_digests`, up to the first that is not a digest.
    pub digests: Vec<Digest>,
    /// The first entry of `blob_digests` that is not a digest: its index, and why.
    pub malformed: Option<(usize, DigestError)>,
    /// `digest_function`, as sent.
    pub digest_function: i32,
    /// Entries of `blob_digests` decoded so far.
    entries: usize,
}

/// `build.bazel.remote.execution.v2.FindMissingBlobsResponse`.
#[derive(Debug, Default, PartialEq)]
pub struct FindMissingResponse {
    /// `missing_blob_digests`.
    pub missing: Vec<Digest>,
}

impl FindMissingRequest {
    /// Decodes a whole serialised request; a message that is not one is `INVALID_ARGUMENT`.
    pub fn decode(mut buf: impl Buf) -> Result<Self, Status> {
        let mut request = Self::default();
        let invalid = |e: prost::DecodeError| not_a_request(e.to_string());
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf).map_err(invalid)?;
            let context = DecodeContext::default();
            match tag {
                REQUEST_BLOB_DIGESTS => {
                    check_wire_type(WireType::LengthDelimited, wire_type).map_err(invalid)?;
                    request.add_digest(&mut buf)?;
                }
                REQUEST_INSTANCE_NAME => {
                    string::merge(wire_type, &mut request.instance_name, &mut buf, context)
                        .map_err(invalid)?;
                }
                REQUEST_DIGEST_FUNCTION => {
                    int32::merge(wire_type, &mut request.digest_function, &mut buf, context)
                        .map_err(invalid)?;
                }
                _ => skip_field(wire_type, tag, &mut buf, context).map_err(invalid)?,
            }
        }
        Ok(request)
    }

    /// Decodes the next entry of `blob_digests` (its length is next in `buf`).
    fn add_digest(&mut self, buf: &mut impl Buf) -> Result<(), Status> {
        let index = self.entries;
        self.entries += 1;
        let len = decode_varint(buf).map_err(|e| not_a_request(e.to_string()))?;
        let len = usize::try_from(len).ok().filter(|&len| len <= buf.remaining()).ok_or_else(|| {
            not_a_request(format!("blob_digests[{index}] runs past the end of the message"))
        })?;
        if self.digests.capacity() == 0 {
            self.digests.reserve(buf.remaining() / TYPICAL_ENTRY_BYTES + 1);
        }
        // A received message is one contiguous buffer; any other `Buf` pays a copy.
        let parsed = if buf.chunk().len() >= len {
            let parsed = parse_digest_message(&buf.chunk()[..len]);
            buf.advance(len);
            parsed
        } else {
            parse_digest_message(&buf.copy_to_bytes(len))
        };
        let parsed = parsed.map_err(|e| not_a_request(format!("blob_digests[{index}]: {e}")))?;
        if self.malformed.is_none() {
            match parsed {
                Ok(digest) => self.digests.push(digest),
                Err(error) => self.malformed = Some((index, error)),
            }
        }
        Ok(())
    }
}

impl FindMissingResponse {
    /// Serialises the response.
    pub fn encode(&self, buf: &mut impl BufMut) {
        for digest in &self.missing {
            encode_key(RESPONSE_MISSING, WireType::LengthDelimited, buf);
            encode_varint(digest_len(digest) as u64, buf);
            encode_digest(digest, buf);
        }
    }

    /// The length of the serialised response.
    pub fn encoded_len(&self) -> usize {
        self.missing
            .iter()
            .map(|digest| {
                let len = digest_len(digest);
                key_len(RESPONSE_MISSING) + encoded_len_varint(len as u64) + len
            })
            .sum()
    }
}

/// The fields of one `Digest` message: the digest, or why it is not one; an error if the bytes
/// are not a `Digest` message at all.
fn parse_digest_message(mut message: &[u8]) -> Result<Result<Digest, DigestError>, String> {
    let mut hash: &[u8] = &[];
    let mut size: i64 = 0;
    while !message.is_empty() {
        let (tag, wire_type) = decode_key(&mut message).map_err(|e| e.to_string())?;
        match tag {
            DIGEST_HASH => {
                check_wire_type(WireType::LengthDelimited, wire_type).map_err(|e| e.to_string())?;
                let len = decode_varint(&mut message).map_err(|e| e.to_string())?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= message.len())
                    .ok_or("its hash runs past the end of the Digest")?;
                (hash, message) = message.split_at(len);
            }
            DIGEST_SIZE => {
                check_wire_type(WireType::Varint, wire_type).map_err(|e| e.to_string())?;
                // An int64 is sent as the 64 bits of its two's complement.
                size = decode_varint(&mut message).map_err(|e| e.to_string())? as i64;
            }
            _ => skip_field(wire_type, tag, &mut message, DecodeContext::default())
                .map_err(|e| e.to_string())?,
        }
    }
    Ok(Digest::from_hex_bytes(hash, size))
}

/// Serialises the fields of `digest`'s `Digest` message (proto3: a default value is left out).
fn encode_digest(digest: &Digest, buf: &mut impl BufMut) {
    let hash = digest.hash_bytes();
    if !hash.is_empty() {
        let mut hex = [0u8; 2 * 64];
        let hex = &mut hex[..2 * hash.len()];
        // `hex` is exactly twice the hash's length, the one thing this checks.
        let _ = const_hex::encode_to_slice(hash, hex);
        encode_key(DIGEST_HASH, WireType::LengthDelimited, buf);
        encode_varint(hex.len() as u64, buf);
        buf.put_slice(hex);
    }
    if digest.size() != 0 {
        encode_key(DIGEST_SIZE, WireType::Varint, buf);
        encode_varint(digest.size(), buf);
    }
}

/// The length of [`encode_digest`]'s output.
fn digest_len(digest: &Digest) -> usize {
    let hex_len = 2 * digest.hash_bytes().len();
    let hash =
        if hex_len == 0 { 0 } else { key_len(DIGEST_HASH) + encoded_len_varint(hex_len as u64) + hex_len };
    let size = if digest.size() == 0 { 0 } else { key_len(DIGEST_SIZE) + encoded_len_varint(digest.size()) };
    hash + size
}

fn not_a_request(problem: String) -> Status {
    Status::invalid_argument(format!("the FindMissingBlobsRequest is not a valid message: {problem}"))
}

/// The gRPC codec of FindMissingBlobs on these types.
#[derive(Debug, Clone, Copy, Default)]
pub struct FindMissingCodec;

impl Codec for FindMissingCodec {
    type Encode = FindMissingResponse;
    type Decode = FindMissingRequest;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for FindMissingCodec {
    type Item = FindMissingResponse;
    type Error = Status;

    fn encode(&mut self, response: FindMissingResponse, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(response.encoded_len());
        response.encode(buf);
        Ok(())
    }
}

impl Decoder for FindMissingCodec {
    type Item = FindMissingRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<FindMissingRequest>, Status> {
        FindMissingRequest::decode(buf).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;
    use tonic::Code;

    use super::*;
    use crate::digest::DigestFunction;
    use crate::proto::build::bazel::remote::execution::v2 as reapi;

    fn proto(digest: &Digest) -> reapi::Digest {
        reapi::Digest { hash: digest.hash_hex(), size_bytes: digest.size_i64() }
    }

    /// Digests of every supported length, some of size 0 (a field proto3 leaves out).
    fn digests() -> impl Strategy<Value = Vec<Digest>> {
        let digest = (0..DigestFunction::ALL.len(), any::<u32>(), prop_oneof![Just(0u64), any::<u64>()])
            .prop_map(|(function, seed, size)| {
                let hashed = DigestFunction::ALL[function].hash_bytes(&seed.to_le_bytes());
                Digest::from_raw(hashed.hash_bytes(), size >> 1)
            });
        prop::collection::vec(digest, 0..40)
    }

    fn encoded(response: &FindMissingResponse) -> Vec<u8> {
        let mut buf = Vec::new();
        response.encode(&mut buf);
        buf
    }

    proptest! {
        #[test]
        fn decodes_what_the_generated_type_encodes(
            digests in digests(),
            instance_name in "[a-z/]{0,12}",
            digest_function in prop_oneof![Just(0), 1..10],
        ) {
            let sent = reapi::FindMissingBlobsRequest {
                instance_name: instance_name.clone(),
                blob_digests: digests.iter().map(proto).collect(),
                digest_function,
            };
            let request = FindMissingRequest::decode(sent.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(request.instance_name, instance_name);
            prop_assert_eq!(request.digests, digests);
            prop_assert_eq!(request.malformed, None);
            prop_assert_eq!(request.digest_function, digest_function);
        }

        #[test]
        fn encodes_what_the_generated_type_encodes(digests in digests()) {
            let expected = reapi::FindMissingBlobsResponse { missing_blob_digests: digests.iter().map(proto).collect() };
            let response = FindMissingResponse { missing: digests };
            let bytes = encoded(&response);
            prop_assert_eq!(response.encoded_len(), bytes.len());
            prop_assert_eq!(bytes, expected.encode_to_vec());
        }

        #[test]
        fn arbitrary_bytes_decode_or_are_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Err(status) = FindMissingRequest::decode(bytes.as_slice()) {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
            }
        }
    }

    #[test]
    fn the_first_entry_that_is_not_a_digest_is_kept_with_its_index() {
        let good = DigestFunction::Sha256.hash_bytes(b"good");
        let sent = reapi::FindMissingBlobsRequest {
            blob_digests: vec![
                proto(&good),
                reapi::Digest { hash: "zz".into(), size_bytes: 1 },
                reapi::Digest { hash: good.hash_hex(), size_bytes: -1 },
                proto(&good),
            ],
            ..Default::default()
        };
        let request = FindMissingRequest::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert_eq!(request.digests, [good]);
        let (index, error) = request.malformed.unwrap();
        assert_eq!(index, 1);
        assert!(error.to_string().contains("\"zz\""), "{error}");
    }

    #[test]
    fn a_negative_size_is_not_a_digest() {
        let sent = reapi::FindMissingBlobsRequest {
            blob_digests: vec![reapi::Digest { hash: "ab".repeat(32), size_bytes: -1 }],
            ..Default::default()
        };
        let request = FindMissingRequest::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert!(matches!(request.malformed, Some((0, DigestError::Size(_)))));
    }

    #[test]
    fn unknown_fields_are_skipped_at_both_levels() {
        let digest = DigestFunction::Sha256.hash_bytes(b"x");
        let mut entry = proto(&digest).encode_to_vec();
        entry.extend([(7 << 3) | 2, 3, b'a', b'b', b'c', (8 << 3), 42]); // field 7: "abc"; field 8: 42
        let mut bytes = Vec::new();
        encode_key(REQUEST_BLOB_DIGESTS, WireType::LengthDelimited, &mut bytes);
        encode_varint(entry.len() as u64, &mut bytes);
        bytes.extend(&entry);
        bytes.extend([(9 << 3) | 5, 1, 2, 3, 4]); // field 9: fixed32
        let request = FindMissingRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(request.digests, [digest]);
    }

    #[test]
    fn a_request_split_across_buffers_decodes_the_same() {
        let digests: Vec<_> = (0..10u8).map(|i| DigestFunction::Sha256.hash_bytes(&[i])).collect();
        let sent = reapi::FindMissingBlobsRequest {
            blob_digests: digests.iter().map(proto).collect(),
            ..Default::default()
        };
        let bytes = sent.encode_to_vec();
        for split in [1, 30, 71, bytes.len() / 2, bytes.len() - 1] {
            let (head, tail) = bytes.split_at(split);
            let request = FindMissingRequest::decode(head.chain(tail)).unwrap();
            assert_eq!(request.digests, digests, "split at {split}");
        }
    }

    #[test]
    fn a_message_that_is_not_a_request_is_refused_clearly() {
        let digest = proto(&DigestFunction::Sha256.hash_bytes(b"x")).encode_to_vec();
        let entry = |body: &[u8]| {
            let mut bytes = vec![(2 << 3) | 2];
            encode_varint(body.len() as u64, &mut bytes);
            bytes.extend(body);
            bytes
        };
        let mut overlong_hash = vec![(1 << 3) | 2, 100];
        overlong_hash.extend(b"abc");
        let cases: [(Vec<u8>, &str); 4] = [
            (entry(&digest)[..40].to_vec(), "blob_digests[0] runs past the end"),
            (vec![2 << 3, 5], "wire type"),
            (entry(&overlong_hash), "blob_digests[0]: its hash runs past the end of the Digest"),
            (entry(&[1 << 3, 5]), "blob_digests[0]: failed to decode Protobuf message: invalid wire type"),
        ];
        for (bytes, words) in cases {
            let status = FindMissingRequest::decode(bytes.as_slice()).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(
                status.message().contains("not a valid message") && status.message().contains(words),
                "{}",
                status.message()
            );
        }
    }
}
