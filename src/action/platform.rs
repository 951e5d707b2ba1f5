//! Platform properties: what the action asks of the sandbox, checked before anything is staged.
//!
//! Honoured: `OSFamily` (`linux`), `ISA` (`x86-64`; `x86-32` runs under a 32-bit personality),
//! `unixUID`/`unixGID` (who owns the staged files and who the command runs as), `network`
//! (`on`, or `off`), `remoteApisSocketPath` (the CAS socket appears there inside). Unknown names
//! are ignored, as BuildBox does; a known name with a value rebox cannot honour is refused.

use std::path::PathBuf;

use rebox_runner_spec::Personality;

use super::error::ActionError;
use crate::proto::build::bazel::remote::execution::v2 as reapi;

/// The ISAs the sandbox can run, as platform values.
pub const ISAS: &[&str] = &["x86-32", "x86-64"];

/// The decoded platform of an action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    /// The execution domain (`ISA`).
    pub personality: Personality,
    /// `unixUID`, if given.
    pub uid: Option<u32>,
    /// `unixGID`, if given.
    pub gid: Option<u32>,
    /// `network=on`.
    pub network: bool,
    /// `remoteApisSocketPath`: where the CAS socket is bound inside the sandbox.
    pub remote_apis_socket_path: Option<PathBuf>,
    /// Every property as given (for `--ro-bind-mount=CONTENT:...`'s `inject=CONTENT`).
    pub properties: Vec<(String, String)>,
}

impl Platform {
    /// Decodes `platform`, refusing values rebox cannot honour.
    pub fn from_proto(platform: Option<&reapi::Platform>) -> Result<Self, ActionError> {
        let mut decoded = Platform::default();
        for property in platform.map(|p| p.properties.as_slice()).unwrap_or_default() {
            let (name, value) = (property.name.as_str(), property.value.as_str());
            let refuse = |reason: &str| ActionError::Platform {
                name: name.to_owned(),
                value: value.to_owned(),
                reason: reason.to_owned(),
            };
            match name {
                "OSFamily" if value != "linux" => return Err(refuse("only \"linux\" is supported")),
                "ISA" => {
                    decoded.personality = match value {
                        "x86-64" => Personality::Native,
                        "x86-32" => Personality::Linux32,
                        _ => return Err(refuse("only \"x86-64\" and \"x86-32\" are supported")),
                    }
                }
                "unixUID" => decoded.uid = Some(parse_id(value).ok_or_else(|| refuse("not a user id"))?),
                "unixGID" => decoded.gid = Some(parse_id(value).ok_or_else(|| refuse("not a group id"))?),
                "network" => {
                    decoded.network = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(refuse("only \"on\" and \"off\" are supported")),
                    }
                }
                "remoteApisSocketPath" => {
                    if !value.starts_with('/') || value.split('/').any(|c| c == "..") {
                        return Err(refuse("must be an absolute path without \"..\""));
                    }
                    decoded.remote_apis_socket_path = Some(PathBuf::from(value));
                }
                _ => {}
            }
            decoded.properties.push((name.to_owned(), value.to_owned()));
        }
        Ok(decoded)
    }

    /// Whether the action has the property `name=value`.
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.properties.iter().any(|(n, v)| n == name && v == value)
    }
}

/// A uid or gid: a decimal number that is not -1.
fn parse_id(value: &str) -> Option<u32> {
    value.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(properties: &[(&str, &str)]) -> reapi::Platform {
        reapi::Platform {
            properties: properties
                .iter()
                .map(|(n, v)| reapi::platform::Property { name: (*n).into(), value: (*v).into() })
                .collect(),
        }
    }

    #[test]
    fn decodes_what_buildstream_sends() {
        let decoded = Platform::from_proto(Some(&platform(&[
            ("ISA", "x86-32"),
            ("OSFamily", "linux"),
            ("network", "on"),
            ("remoteApisSocketPath", "/run/cas.sock"),
            ("unixGID", "100"),
            ("unixUID", "1000"),
            ("whatever", "ignored"),
        ])))
        .unwrap();
        assert_eq!(decoded.personality, Personality::Linux32);
        assert_eq!((decoded.uid, decoded.gid, decoded.network), (Some(1000), Some(100), true));
        assert_eq!(decoded.remote_apis_socket_path, Some(PathBuf::from("/run/cas.sock")));
        assert!(decoded.has("whatever", "ignored") && !decoded.has("whatever", "other"));
        assert_eq!(Platform::from_proto(None).unwrap(), Platform::default());
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (name, value) in [
            ("OSFamily", "windows"),
            ("ISA", "aarch64"),
            ("unixUID", "-1"),
            ("unixUID", "root"),
            ("unixGID", "4294967295"),
            ("network", "maybe"),
            ("remoteApisSocketPath", "relative.sock"),
        ] {
            let error = Platform::from_proto(Some(&platform(&[(name, value)]))).unwrap_err();
            assert!(error.to_string().contains(&format!("{name}={value:?}")), "{error}");
        }
    }
}
