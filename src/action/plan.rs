//! An Action and its Command, decoded and checked into what running it needs: everything is
//! refused here, before anything is staged.

use std::time::Duration;

use prost::Message;

use super::error::ActionError;
use super::paths::normalise;
use super::platform::Platform;
use crate::capture::{OutputFormat, Properties};
use crate::digest::{Digest, DigestFunction};
use crate::grpc::request::parse_digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;

/// Which ActionResult field an output was asked for by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputField {
    /// `output_paths`: a file, directory or symlink.
    Path,
    /// The legacy `output_files`.
    File,
    /// The legacy `output_directories`.
    Directory,
}

/// One requested output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The path as the Command gives it (relative to the working directory): the result's key.
    pub path: String,
    /// The path's components from the input root.
    pub components: Vec<String>,
    /// The field that asked for it.
    pub field: OutputField,
}

/// The decoded Action.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The input root's digest.
    pub input_root: Digest,
    /// The Command's digest.
    pub command_digest: Digest,
    /// Arguments, `argv[0]` first.
    pub arguments: Vec<String>,
    /// The environment, exactly as given.
    pub environment: Vec<(String, String)>,
    /// The working directory's components from the input root.
    pub working_directory: Vec<String>,
    /// The outputs to capture.
    pub outputs: Vec<Output>,
    /// The node properties to record on outputs.
    pub properties: Properties,
    /// How output directories are described.
    pub format: OutputFormat,
    /// The platform.
    pub platform: Platform,
    /// `Action.timeout`, if any.
    pub timeout: Option<Duration>,
}

impl Plan {
    /// Decodes the serialized Action `action`.
    pub fn decode_action(action: &[u8]) -> Result<reapi::Action, ActionError> {
        reapi::Action::decode(action)
            .map_err(|e| ActionError::Invalid(format!("the Action does not decode: {e}")))
    }

    /// The digest of the Action's Command (to fetch it).
    pub fn command_digest(action: &reapi::Action, function: DigestFunction) -> Result<Digest, ActionError> {
        digest(action.command_digest.as_ref(), "command", function)
    }

    /// The digest of the Action's input root (to stage it).
    pub fn input_root(action: &reapi::Action, function: DigestFunction) -> Result<Digest, ActionError> {
        digest(action.input_root_digest.as_ref(), "input root", function)
    }

    /// Decodes and checks `action` with its serialized `command`.
    pub fn new(
        action: &reapi::Action,
        command: &[u8],
        function: DigestFunction,
    ) -> Result<Self, ActionError> {
        let command_digest = Self::command_digest(action, function)?;
        let input_root = digest(action.input_root_digest.as_ref(), "input root", function)?;
        let command = reapi::Command::decode(command).map_err(|e| {
            ActionError::Invalid(format!("the Command {command_digest} does not decode: {e}"))
        })?;
        if command.arguments.is_empty() {
            return Err(ActionError::Invalid("the Command has no arguments".to_owned()));
        }
        let working_directory = normalise(&[], &command.working_directory, "working_directory")?;
        let mut outputs = Vec::new();
        let legacy = [
            (&command.output_files, OutputField::File),
            (&command.output_directories, OutputField::Directory),
        ];
        // REAPI v2.1: when output_paths is set, the legacy fields are ignored.
        let requested: Vec<(&Vec<String>, OutputField)> = if command.output_paths.is_empty() {
            legacy.to_vec()
        } else {
            vec![(&command.output_paths, OutputField::Path)]
        };
        for (paths, field) in requested {
            for path in paths {
                let components = normalise(&working_directory, path, "output path")?;
                outputs.push(Output { path: path.clone(), components, field });
            }
        }
        let platform = match action.platform.as_ref().filter(|p| !p.properties.is_empty()) {
            Some(platform) => Platform::from_proto(Some(platform))?,
            None => Platform::from_proto(command.platform.as_ref())?,
        };
        let timeout = match &action.timeout {
            Some(t) if t.seconds < 0 || t.nanos < 0 => {
                return Err(ActionError::Invalid(format!("negative timeout {t}")));
            }
            Some(t) if t.seconds == 0 && t.nanos == 0 => None,
            Some(t) => Some(Duration::new(t.seconds as u64, t.nanos as u32)),
            None => None,
        };
        Ok(Plan {
            input_root,
            command_digest,
            arguments: command.arguments,
            environment: command.environment_variables.into_iter().map(|v| (v.name, v.value)).collect(),
            working_directory,
            outputs,
            properties: Properties::from_names(
                command.output_node_properties.iter().map(String::as_str),
                None,
            ),
            format: OutputFormat::from_proto(command.output_directory_format),
            platform,
            timeout,
        })
    }
}

fn digest(
    digest: Option<&reapi::Digest>,
    what: &'static str,
    function: DigestFunction,
) -> Result<Digest, ActionError> {
    let digest = digest.ok_or(ActionError::Digest { what, source: crate::digest::DigestError::Missing })?;
    parse_digest(digest, function).map_err(|source| ActionError::Digest { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::to_proto;

    fn action(function: DigestFunction, command: &reapi::Command) -> (reapi::Action, Vec<u8>) {
        let bytes = command.encode_to_vec();
        let action = reapi::Action {
            command_digest: Some(to_proto(&function.hash_bytes(&bytes))),
            input_root_digest: Some(to_proto(&function.hash_bytes(b""))),
            ..Default::default()
        };
        (action, bytes)
    }

    #[test]
    fn output_paths_win_over_the_legacy_fields() {
        let function = DigestFunction::Sha256;
        let mut command = reapi::Command {
            arguments: vec!["true".into()],
            working_directory: "a/b".into(),
            output_files: vec!["f".into()],
            output_directories: vec!["../d".into()],
            ..Default::default()
        };
        let (action, bytes) = action(function, &command);
        let plan = Plan::new(&action, &bytes, function).unwrap();
        let fields: Vec<_> =
            plan.outputs.iter().map(|o| (o.path.as_str(), o.components.join("/"), o.field)).collect();
        assert_eq!(
            fields,
            [("f", "a/b/f".into(), OutputField::File), ("../d", "a/d".into(), OutputField::Directory)]
        );

        command.output_paths = vec!["../..".into()];
        let (action, bytes) = super::tests::action(function, &command);
        let plan = Plan::new(&action, &bytes, function).unwrap();
        assert_eq!(plan.outputs.len(), 1);
        assert_eq!((plan.outputs[0].components.len(), plan.outputs[0].field), (0, OutputField::Path));
    }

    #[test]
    fn refuses_bad_commands() {
        let function = DigestFunction::Sha256;
        let (action, bytes) = action(function, &reapi::Command::default());
        assert!(Plan::new(&action, &bytes, function).unwrap_err().to_string().contains("no arguments"));
        let command = reapi::Command {
            arguments: vec!["x".into()],
            output_paths: vec!["../x".into()],
            ..Default::default()
        };
        let (action, bytes) = super::tests::action(function, &command);
        assert!(Plan::new(&action, &bytes, function).unwrap_err().to_string().contains("climbs above"));
        let (mut action, bytes) = super::tests::action(
            function,
            &reapi::Command { arguments: vec!["x".into()], ..Default::default() },
        );
        action.input_root_digest = None;
        assert!(Plan::new(&action, &bytes, function).unwrap_err().to_string().contains("input root"));
    }
}
