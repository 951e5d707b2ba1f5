//! buildbox-casd's remote-server flags: the same sixteen options for all services at once
//! (`--remote`, `--instance`, ...) and for each service (`--cas-remote`, `--ac-remote`,
//! `--ra-remote`, `--exec-remote`, ...). rebox casd accepts and checks them all, so that callers
//! written for buildbox-casd parse; using a remote is refused until rebox has a remote proxy.

use std::collections::BTreeMap;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use crate::expiry::ByteSize;

/// Flag prefixes, and the service each configures.
const SERVICES: [(&str, &str); 5] = [
    ("", "all services"),
    ("cas-", "the CAS service"),
    ("ac-", "the Action Cache service"),
    ("ra-", "the Remote Asset service"),
    ("exec-", "the Execution service"),
];

/// What a flag's value must look like.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Integer,
    /// Bytes with an optional K, M, G or T suffix.
    Size,
    /// `--flag`, `--flag=true` or `--flag=false`.
    Switch,
    /// Text, repeatable.
    Repeated,
}

/// Each service's options (after the prefix), their kind and what they set.
const OPTIONS: [(&str, Kind, &str); 16] = [
    ("remote", Kind::Text, "URL of the remote server"),
    ("instance", Kind::Text, "Instance name on the remote server"),
    ("server-cert", Kind::Text, "Server TLS certificate (PEM file)"),
    ("client-key", Kind::Text, "Client TLS private key (PEM file)"),
    ("client-cert", Kind::Text, "Client TLS certificate (PEM file)"),
    ("access-token", Kind::Text, "File holding a bearer token for the Authorization header"),
    ("token-reload-interval", Kind::Integer, "Minutes between reloads of the access token"),
    ("googleapi-auth", Kind::Switch, "Use Google API authentication"),
    ("credential-helper", Kind::Text, "Credential helper executable"),
    ("retry-limit", Kind::Integer, "Retries of failed gRPC calls"),
    ("retry-delay", Kind::Integer, "Delay before the first retry, in milliseconds"),
    ("retry-on-code", Kind::Repeated, "gRPC status code to retry on, e.g. UNKNOWN (repeatable)"),
    ("request-timeout", Kind::Integer, "Timeout of gRPC calls in seconds (0: none)"),
    ("min-throughput", Kind::Size, "Minimum throughput of gRPC calls, bytes per second (K, M, G, T)"),
    ("keepalive-time", Kind::Integer, "Seconds between keepalive pings (0: none)"),
    ("load-balancing-policy", Kind::Text, "gRPC load balancing policy: round_robin or grpclb"),
];

/// The remote-server flags given, by flag name (without `--`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteArgs {
    values: BTreeMap<String, Vec<String>>,
}

impl RemoteArgs {
    /// The first remote server given (a non-empty `--remote`, `--cas-remote`, `--ac-remote`,
    /// `--ra-remote` or `--exec-remote`), as the flag and its URL.
    pub fn remote(&self) -> Option<(String, &str)> {
        SERVICES.iter().find_map(|(prefix, _)| {
            let flag = format!("{prefix}remote");
            let url = self.get(&flag).filter(|url| !url.is_empty())?;
            Some((flag, url))
        })
    }

    /// The (last) value of `--FLAG`, if given.
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).and_then(|values| values.last()).map(String::as_str)
    }
}

/// Every flag: prefix + option for each service, plus `--cas-protocol`.
fn flags() -> impl Iterator<Item = (String, Kind, String)> {
    let per_service = SERVICES.iter().flat_map(|(prefix, service)| {
        OPTIONS.iter().map(move |(option, kind, help)| {
            (format!("{prefix}{option}"), *kind, format!("{help}, for {service}"))
        })
    });
    per_service.chain(std::iter::once((
        "cas-protocol".to_owned(),
        Kind::Text,
        "Protocol of the CAS service: grpc (default) or http".to_owned(),
    )))
}

fn arg(name: String, kind: Kind, help: String) -> Arg {
    let arg = Arg::new(name.clone()).long(name).help(help);
    match kind {
        Kind::Text => arg.value_name("VALUE").action(ArgAction::Set),
        Kind::Integer => arg.value_name("N").action(ArgAction::Set).value_parser(integer),
        Kind::Size => arg.value_name("BYTES").action(ArgAction::Set).value_parser(size),
        Kind::Switch => arg
            .value_name("BOOL")
            .action(ArgAction::Set)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_parser(switch),
        Kind::Repeated => arg.value_name("VALUE").action(ArgAction::Append),
    }
}

fn integer(text: &str) -> Result<String, String> {
    text.parse::<u64>().map(|_| text.to_owned()).map_err(|_| format!("{text:?} is not a whole number"))
}

fn size(text: &str) -> Result<String, String> {
    text.parse::<ByteSize>().map(|_| text.to_owned()).map_err(|error| error.to_string())
}

fn switch(text: &str) -> Result<String, String> {
    match text {
        "true" | "false" => Ok(text.to_owned()),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

impl FromArgMatches for RemoteArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = BTreeMap::new();
        for (name, _, _) in flags() {
            if let Some(given) = matches.get_many::<String>(&name) {
                values.insert(name, given.cloned().collect());
            }
        }
        Ok(Self { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for RemoteArgs {
    fn augment_args(command: Command) -> Command {
        let command = command.next_help_heading("Remote servers (accepted; using one is not supported yet)");
        flags().fold(command, |command, (name, kind, help)| command.arg(arg(name, kind, help)))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        remotes: RemoteArgs,
    }

    fn parse(args: &[&str]) -> Result<RemoteArgs, clap::Error> {
        Test::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|t| t.remotes)
    }

    #[test]
    fn every_service_has_every_option_in_both_forms() {
        assert_eq!(flags().count(), 5 * 16 + 1);
        let remotes = parse(&[
            "--cas-remote=http://cache:50051",
            "--cas-instance",
            "main",
            "--ra-retry-limit=3",
            "--exec-googleapi-auth",
            "--retry-on-code=UNKNOWN",
            "--retry-on-code",
            "INTERNAL",
            "--ac-min-throughput=10M",
            "--cas-protocol=grpc",
        ])
        .unwrap();
        assert_eq!(remotes.get("cas-remote"), Some("http://cache:50051"));
        assert_eq!(remotes.get("cas-instance"), Some("main"));
        assert_eq!(remotes.get("ra-retry-limit"), Some("3"));
        assert_eq!(remotes.get("exec-googleapi-auth"), Some("true"));
        assert_eq!(remotes.values["retry-on-code"], ["UNKNOWN", "INTERNAL"]);
        assert_eq!(remotes.remote(), Some(("cas-remote".to_owned(), "http://cache:50051")));
    }

    #[test]
    fn an_empty_remote_is_no_remote() {
        assert_eq!(parse(&["--cas-remote="]).unwrap().remote(), None);
        assert_eq!(parse(&[]).unwrap().remote(), None);
        assert_eq!(parse(&["--remote=grpc://x:1"]).unwrap().remote().unwrap().0, "remote");
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for args in [&["--cas-retry-limit=many"][..], &["--min-throughput=1.5G"], &["--googleapi-auth=yes"]] {
            let error = parse(args).unwrap_err().to_string();
            let flag = args[0].split('=').next().unwrap();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }
}
