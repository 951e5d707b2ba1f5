//! Structural comparison of two descriptor sets, limited to what decides the wire format and the
//! gRPC surface: messages, fields, enums, enum values, services and methods, by full name.
//!
//! Comments, file layout, options other than `packed`, reserved ranges and JSON names are ignored:
//! they change neither the bytes on the wire nor the RPC paths.

use std::collections::BTreeMap;
use std::fmt;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};

/// One way rebox's descriptors differ from the reference, at a fully-qualified path.
///
/// Details that compare values read `reference != rebox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Full protobuf name of the item, e.g. `build.bazel.remote.execution.v2.Digest.size_bytes`.
    pub path: String,
    /// What differs, e.g. `number 2 != 3` or `field missing from rebox`.
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.detail)
    }
}

/// Compares every message (nested ones too), field, enum, enum value, service and method that
/// `reference` defines in `packages` with those `ours` defines there; items of other packages are
/// ignored. Returns every missing item, extra item and mismatch, in a stable order.
pub fn compare(
    reference: &FileDescriptorSet,
    ours: &FileDescriptorSet,
    packages: &[&str],
) -> Vec<Difference> {
    let theirs = Index::new(reference, packages);
    let ours = Index::new(ours, packages);
    let mut diffs = Differences::default();
    diffs.pair("message", &theirs.messages, &ours.messages, |d, path, a, b| d.message(path, a, b));
    diffs.pair("enum", &theirs.enums, &ours.enums, |d, path, a, b| d.enumeration(path, a, b));
    diffs.pair("service", &theirs.services, &ours.services, |d, path, a, b| d.service(path, a, b));
    diffs.0
}

/// The messages, enums and services of some packages, by full name without the leading dot.
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Index<'a> {
    fn new(set: &'a FileDescriptorSet, packages: &[&str]) -> Self {
        let mut index =
            Index { messages: BTreeMap::new(), enums: BTreeMap::new(), services: BTreeMap::new() };
        for file in set.file.iter().filter(|f| packages.contains(&f.package())) {
            let package = file.package();
            for message in &file.message_type {
                index.add_message(package, message);
            }
            for enumeration in &file.enum_type {
                index.enums.insert(join(package, enumeration.name()), enumeration);
            }
            for service in &file.service {
                index.services.insert(join(package, service.name()), service);
            }
        }
        index
    }

    fn add_message(&mut self, scope: &str, message: &'a DescriptorProto) {
        let name = join(scope, message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for enumeration in &message.enum_type {
            self.enums.insert(join(&name, enumeration.name()), enumeration);
        }
        self.messages.insert(name, message);
    }
}

/// A member identified by name and number: a field or an enum value.
trait Numbered {
    fn name(&self) -> &str;
    fn number(&self) -> i32;
}

impl Numbered for FieldDescriptorProto {
    fn name(&self) -> &str {
        FieldDescriptorProto::name(self)
    }
    fn number(&self) -> i32 {
        FieldDescriptorProto::number(self)
    }
}

impl Numbered for EnumValueDescriptorProto {
    fn name(&self) -> &str {
        EnumValueDescriptorProto::name(self)
    }
    fn number(&self) -> i32 {
        EnumValueDescriptorProto::number(self)
    }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() { name.to_owned() } else { format!("{scope}.{name}") }
}

#[derive(Default)]
struct Differences(Vec<Difference>);

impl Differences {
    fn push(&mut self, path: &str, detail: String) {
        self.0.push(Difference { path: path.to_owned(), detail });
    }

    /// Reports a value that differs, as `what reference != rebox`.
    fn check<T: PartialEq + fmt::Display>(&mut self, path: &str, what: &str, theirs: T, ours: T) {
        if theirs != ours {
            self.push(path, format!("{what} {theirs} != {ours}"));
        }
    }

    /// Pairs named items; reports the unpaired ones and hands each pair to `both`.
    fn pair<T>(
        &mut self,
        kind: &str,
        theirs: &BTreeMap<String, &T>,
        ours: &BTreeMap<String, &T>,
        mut both: impl FnMut(&mut Self, &str, &T, &T),
    ) {
        for (path, a) in theirs {
            match ours.get(path) {
                Some(b) => both(self, path, a, b),
                None => self.push(path, format!("{kind} missing from rebox")),
            }
        }
        for path in ours.keys().filter(|p| !theirs.contains_key(*p)) {
            self.push(path, format!("extra {kind}, not in BuildStream"));
        }
    }

    /// Pairs numbered members (fields, enum values) by name; a leftover on each side with the same
    /// number is reported as a rename rather than as one missing and one extra member.
    fn pair_numbered<T: Numbered>(
        &mut self,
        kind: &str,
        scope: &str,
        theirs: &[T],
        ours: &[T],
        mut both: impl FnMut(&mut Self, &str, &T, &T),
    ) {
        let mut unpaired: Vec<&T> =
            ours.iter().filter(|b| !theirs.iter().any(|a| a.name() == b.name())).collect();
        for a in theirs {
            let path = join(scope, a.name());
            if let Some(b) = ours.iter().find(|b| b.name() == a.name()) {
                both(self, &path, a, b);
            } else if let Some(i) = unpaired.iter().position(|b| b.number() == a.number()) {
                let b = unpaired.remove(i);
                self.push(&path, format!("name {} != {}", a.name(), b.name()));
                both(self, &path, a, b);
            } else {
                self.push(&path, format!("{kind} missing from rebox"));
            }
        }
        for b in unpaired {
            self.push(&join(scope, b.name()), format!("extra {kind}, not in BuildStream"));
        }
    }

    fn message(&mut self, path: &str, theirs: &DescriptorProto, ours: &DescriptorProto) {
        self.pair_numbered("field", path, &theirs.field, &ours.field, |d, path, a, b| {
            d.field(path, (theirs, a), (ours, b))
        });
    }

    fn field(
        &mut self,
        path: &str,
        (their_message, theirs): (&DescriptorProto, &FieldDescriptorProto),
        (our_message, ours): (&DescriptorProto, &FieldDescriptorProto),
    ) {
        self.check(path, "number", theirs.number(), ours.number());
        self.check(path, "type", type_of(theirs), type_of(ours));
        self.check(path, "type_name", theirs.type_name(), ours.type_name());
        self.check(path, "label", label_of(theirs), label_of(ours));
        self.check(path, "oneof", oneof_of(their_message, theirs), oneof_of(our_message, ours));
        self.check(path, "proto3_optional", theirs.proto3_optional(), ours.proto3_optional());
        self.check(path, "packed", packed_of(theirs), packed_of(ours));
    }

    fn enumeration(&mut self, path: &str, theirs: &EnumDescriptorProto, ours: &EnumDescriptorProto) {
        self.pair_numbered("enum value", path, &theirs.value, &ours.value, |d, path, a, b| {
            d.check(path, "number", a.number(), b.number())
        });
    }

    fn service(&mut self, path: &str, theirs: &ServiceDescriptorProto, ours: &ServiceDescriptorProto) {
        self.pair("method", &methods(path, theirs), &methods(path, ours), |d, path, a, b| {
            d.check(path, "input_type", a.input_type(), b.input_type());
            d.check(path, "output_type", a.output_type(), b.output_type());
            d.check(path, "client_streaming", a.client_streaming(), b.client_streaming());
            d.check(path, "server_streaming", a.server_streaming(), b.server_streaming());
        });
    }
}

fn methods<'a>(
    path: &str,
    service: &'a ServiceDescriptorProto,
) -> BTreeMap<String, &'a MethodDescriptorProto> {
    service.method.iter().map(|m| (join(path, m.name()), m)).collect()
}

fn type_of(field: &FieldDescriptorProto) -> String {
    match field.r#type {
        Some(t) => Type::try_from(t).map_or_else(|_| t.to_string(), |t| t.as_str_name().to_owned()),
        None => "(unset)".to_owned(),
    }
}

fn label_of(field: &FieldDescriptorProto) -> String {
    match field.label {
        Some(l) => Label::try_from(l).map_or_else(|_| l.to_string(), |l| l.as_str_name().to_owned()),
        None => "(unset)".to_owned(),
    }
}

fn oneof_of(message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
    match field.oneof_index {
        Some(i) => usize::try_from(i)
            .ok()
            .and_then(|i| message.oneof_decl.get(i))
            .map_or_else(|| format!("#{i}"), |o| o.name().to_owned()),
        None => "(none)".to_owned(),
    }
}

fn packed_of(field: &FieldDescriptorProto) -> String {
    match field.options.as_ref().and_then(|o| o.packed) {
        Some(packed) => packed.to_string(),
        None => "(default)".to_owned(),
    }
}
