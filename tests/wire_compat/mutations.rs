//! Proof that the checker fails: each test alters one thing in a copy of BuildStream's own
//! descriptor set and asserts that comparing against it reports exactly that difference.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet, MethodDescriptorProto};

use crate::compare::compare;
use crate::descriptors::{IMPLEMENTED_PACKAGES, bst};

const REAPI: &str = "build.bazel.remote.execution.v2";

/// The differences between BuildStream's set and a copy altered by `alter`, as printed lines.
fn differences_after(alter: impl FnOnce(&mut FileDescriptorSet)) -> Vec<String> {
    let mut altered = bst().clone();
    alter(&mut altered);
    compare(bst(), &altered, IMPLEMENTED_PACKAGES).iter().map(ToString::to_string).collect()
}

/// Splits a full name into the package of a file in `set` and the rest.
fn split_package<'a>(set: &FileDescriptorSet, full: &'a str) -> (usize, &'a str) {
    set.file
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((i, full.strip_prefix(f.package())?.strip_prefix('.')?)))
        .find(|(i, rest)| {
            set.file[*i].message_type.iter().any(|m| rest.split('.').next() == m.name.as_deref())
        })
        .unwrap_or_else(|| panic!("no message {full} in BuildStream's protos"))
}

fn message_mut<'a>(set: &'a mut FileDescriptorSet, full: &str) -> &'a mut DescriptorProto {
    let (file, rest) = split_package(set, full);
    let mut names = rest.split('.');
    let first = names.next().expect("split yields at least one name");
    let mut message = set.file[file].message_type.iter_mut().find(|m| m.name() == first).expect("top level");
    for name in names {
        message =
            message.nested_type.iter_mut().find(|m| m.name() == name).unwrap_or_else(|| panic!("{full}"));
    }
    message
}

fn field_mut<'a>(
    set: &'a mut FileDescriptorSet,
    message: &str,
    field: &str,
) -> &'a mut prost_types::FieldDescriptorProto {
    let message = message_mut(set, message);
    message.field.iter_mut().find(|f| f.name() == field).unwrap_or_else(|| panic!("no field {field}"))
}

/// An enum nested in a message.
fn enum_mut<'a>(set: &'a mut FileDescriptorSet, message: &str, name: &str) -> &'a mut EnumDescriptorProto {
    let message = message_mut(set, message);
    message.enum_type.iter_mut().find(|e| e.name() == name).unwrap_or_else(|| panic!("no enum {name}"))
}

fn method_mut<'a>(
    set: &'a mut FileDescriptorSet,
    service: &str,
    method: &str,
) -> &'a mut MethodDescriptorProto {
    set.file
        .iter_mut()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.service.iter_mut().filter(move |s| format!("{package}.{}", s.name()) == service)
        })
        .flat_map(|s| s.method.iter_mut())
        .find(|m| m.name() == method)
        .unwrap_or_else(|| panic!("no method {service}.{method}"))
}

#[test]
fn unaltered_reference_has_no_differences() {
    assert_eq!(differences_after(|_| {}), Vec::<String>::new());
}

#[test]
fn changed_field_number_is_reported() {
    let diffs =
        differences_after(|set| field_mut(set, &format!("{REAPI}.Digest"), "size_bytes").number = Some(3));
    assert_eq!(diffs, [format!("{REAPI}.Digest.size_bytes: number 2 != 3")]);
}

#[test]
fn renamed_field_is_reported_once() {
    let diffs = differences_after(|set| {
        field_mut(set, &format!("{REAPI}.Digest"), "hash").name = Some("hash_hex".to_owned());
    });
    assert_eq!(diffs, [format!("{REAPI}.Digest.hash: name hash != hash_hex")]);
}

#[test]
fn changed_scalar_type_is_reported() {
    let diffs = differences_after(|set| {
        field_mut(set, &format!("{REAPI}.Digest"), "size_bytes").set_type(Type::Int32);
    });
    assert_eq!(diffs, [format!("{REAPI}.Digest.size_bytes: type TYPE_INT64 != TYPE_INT32")]);
}

#[test]
fn changed_message_type_is_reported() {
    let diffs = differences_after(|set| {
        field_mut(set, &format!("{REAPI}.FileNode"), "digest").type_name =
            Some(format!(".{REAPI}.NodeProperties"));
    });
    assert_eq!(
        diffs,
        [format!("{REAPI}.FileNode.digest: type_name .{REAPI}.Digest != .{REAPI}.NodeProperties")]
    );
}

#[test]
fn changed_label_is_reported() {
    let diffs = differences_after(|set| {
        field_mut(set, &format!("{REAPI}.Command"), "arguments").set_label(Label::Optional);
    });
    assert_eq!(diffs, [format!("{REAPI}.Command.arguments: label LABEL_REPEATED != LABEL_OPTIONAL")]);
}

#[test]
fn field_taken_out_of_its_oneof_is_reported() {
    let diffs = differences_after(|set| {
        field_mut(set, "google.longrunning.Operation", "response").oneof_index = None
    });
    assert_eq!(diffs, ["google.longrunning.Operation.response: oneof result != (none)"]);
}

#[test]
fn proto3_optional_is_reported() {
    let diffs = differences_after(|set| {
        field_mut(set, "build.buildgrid.StageTreeRequest", "path").proto3_optional = Some(true);
    });
    assert_eq!(diffs, ["build.buildgrid.StageTreeRequest.path: proto3_optional false != true"]);
}

#[test]
fn extra_field_is_reported() {
    let diffs = differences_after(|set| {
        let message = message_mut(set, "google.bytestream.ReadResponse");
        let mut extra = message.field[0].clone();
        extra.name = Some("checksum".to_owned());
        extra.number = Some(11);
        message.field.push(extra);
    });
    assert_eq!(diffs, ["google.bytestream.ReadResponse.checksum: extra field, not in BuildStream"]);
}

#[test]
fn removed_enum_value_is_reported() {
    let diffs = differences_after(|set| {
        enum_mut(set, &format!("{REAPI}.DigestFunction"), "Value").value.retain(|v| v.name() != "BLAKE3");
    });
    assert_eq!(diffs, [format!("{REAPI}.DigestFunction.Value.BLAKE3: enum value missing from rebox")]);
}

#[test]
fn changed_enum_value_number_is_reported() {
    let diffs = differences_after(|set| {
        let compressor = enum_mut(set, &format!("{REAPI}.Compressor"), "Value");
        compressor.value.iter_mut().find(|v| v.name() == "ZSTD").expect("ZSTD").number = Some(5);
    });
    assert_eq!(diffs, [format!("{REAPI}.Compressor.Value.ZSTD: number 1 != 5")]);
}

#[test]
fn changed_server_streaming_is_reported() {
    let diffs = differences_after(|set| {
        method_mut(set, "google.bytestream.ByteStream", "Read").server_streaming = Some(false);
    });
    assert_eq!(diffs, ["google.bytestream.ByteStream.Read: server_streaming true != false"]);
}

#[test]
fn changed_client_streaming_is_reported() {
    let diffs = differences_after(|set| {
        method_mut(set, "build.buildgrid.LocalContentAddressableStorage", "StageTree").client_streaming =
            Some(false);
    });
    assert_eq!(
        diffs,
        ["build.buildgrid.LocalContentAddressableStorage.StageTree: client_streaming true != false"]
    );
}

#[test]
fn changed_method_output_type_is_reported() {
    let diffs = differences_after(|set| {
        method_mut(set, &format!("{REAPI}.ActionCache"), "UpdateActionResult").output_type =
            Some(".google.protobuf.Empty".to_owned());
    });
    assert_eq!(
        diffs,
        [format!(
            "{REAPI}.ActionCache.UpdateActionResult: output_type .{REAPI}.ActionResult != .google.protobuf.Empty"
        )]
    );
}

#[test]
fn removed_method_is_reported() {
    let diffs = differences_after(|set| {
        let service =
            set.file.iter_mut().flat_map(|f| f.service.iter_mut()).find(|s| s.name() == "Capabilities");
        service.expect("Capabilities service").method.clear();
    });
    assert_eq!(diffs, [format!("{REAPI}.Capabilities.GetCapabilities: method missing from rebox")]);
}

#[test]
fn removed_message_is_reported() {
    let diffs = differences_after(|set| {
        let file =
            set.file.iter_mut().find(|f| f.package() == "build.bazel.remote.asset.v1").expect("asset file");
        file.message_type.retain(|m| m.name() != "Qualifier");
    });
    assert_eq!(diffs, ["build.bazel.remote.asset.v1.Qualifier: message missing from rebox"]);
}

#[test]
fn removed_nested_message_is_reported() {
    let diffs = differences_after(|set| {
        message_mut(set, &format!("{REAPI}.BatchUpdateBlobsRequest")).nested_type.clear();
    });
    assert_eq!(diffs, [format!("{REAPI}.BatchUpdateBlobsRequest.Request: message missing from rebox")]);
}

#[test]
fn removed_nested_enum_is_reported() {
    let diffs =
        differences_after(|set| message_mut(set, "build.buildgrid.StageTreeRequest").enum_type.clear());
    assert_eq!(diffs, ["build.buildgrid.StageTreeRequest.StagingMode: enum missing from rebox"]);
}

#[test]
fn changes_outside_the_implemented_packages_are_ignored() {
    let diffs = differences_after(|set| {
        message_mut(set, "buildstream.v2.Artifact").field.clear();
        for file in set.file.iter_mut().filter(|f| f.package() == "google.api") {
            file.message_type.clear();
        }
    });
    assert_eq!(diffs, Vec::<String>::new());
}
