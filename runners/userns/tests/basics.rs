//! The sandbox runs commands: exit codes, signals, environment, working directory, ids.

mod support;

use rebox_runner_spec::Outcome;
use support::Fixture;

#[test]
fn true_and_false_exit_with_their_codes() {
    let fixture = Fixture::new();
    let run = fixture.run(&fixture.spec("true")).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(0), "{}", run.stderr);
    let run = fixture.run(&fixture.spec("exit 42")).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(42));
}
