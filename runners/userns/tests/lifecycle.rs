//! The sandbox's lifetime: nothing outlives the command, timeouts and cancellation kill
//! everything quickly, resource usage is reported, and spawning is fast.

mod support;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use rebox_runner_spec::{Cancel, Outcome};
use support::{Fixture, host_processes_with_cmdline};

/// A `sleep` argument no other test (or host process) uses.
fn unique_seconds(salt: u32) -> String {
    (900_000 + std::process::id() % 50_000 * 10 + salt).to_string()
}

#[test]
fn background_processes_are_gone_when_the_command_exits() {
    let fixture = Fixture::new();
    let seconds = unique_seconds(1);
    let started = Instant::now();
    let run =
        fixture.run(&fixture.spec(&format!("sleep {seconds} & sleep {seconds} & echo started"))).unwrap();
    assert_eq!(run.stdout, "started\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(host_processes_with_cmdline(&["sleep", &seconds]), Vec::<u32>::new());
}

#[test]
fn a_timeout_kills_the_whole_sandbox_quickly() {
    let fixture = Fixture::new();
    let seconds = unique_seconds(2);
    let mut spec = fixture.spec(&format!("sleep {seconds} & sleep {seconds}"));
    spec.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let run = fixture.run(&spec).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(run.completion.outcome, Outcome::TimedOut);
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(host_processes_with_cmdline(&["sleep", &seconds]), Vec::<u32>::new());
}

#[test]
fn cancelling_kills_the_whole_sandbox() {
    let fixture = Fixture::new();
    let seconds = unique_seconds(3);
    let cancel = Cancel::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.cancel(libc::SIGTERM);
        })
    };
    let started = Instant::now();
    let run = fixture.run_with(&fixture.spec(&format!("sleep {seconds}")), &cancel).unwrap();
    canceller.join().unwrap();
    assert_eq!(run.completion.outcome, Outcome::Cancelled(libc::SIGTERM));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(host_processes_with_cmdline(&["sleep", &seconds]), Vec::<u32>::new());
}

#[test]
fn a_command_that_ends_in_time_is_not_reported_as_timed_out() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("exit 3");
    spec.timeout = Some(Duration::from_secs(30));
    assert_eq!(fixture.run(&spec).unwrap().completion.outcome, Outcome::Exited(3));
}

#[test]
fn signals_sent_to_init_reach_the_command() {
    let fixture = Fixture::new();
    // The command asks init (pid 1) to pass SIGUSR1 on to it, and reports receiving it.
    let run =
        fixture.run(&fixture.spec("trap 'echo got it; exit 7' USR1; kill -USR1 1; sleep 5 & wait")).unwrap();
    assert_eq!(run.stdout, "got it\n");
    assert_eq!(run.completion.outcome, Outcome::Exited(7));
}

#[test]
fn resource_usage_covers_the_sandboxs_processes() {
    let fixture = Fixture::new();
    let busy = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done";
    let run = fixture.run(&fixture.spec(&format!("({busy}) & {busy}; wait"))).unwrap();
    let usage = run.completion.usage;
    assert!(usage.user_time + usage.system_time >= Duration::from_millis(50), "{usage:?}");
    assert!(usage.max_rss_kib > 0, "{usage:?}");
}

/// The spawn overhead: median wall time of `/bin/true` over 20 runs (printed; a few ms expected).
#[test]
fn spawning_true_takes_a_few_milliseconds() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("");
    spec.argv = vec![OsString::from("/bin/true")];
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let run = fixture.run(&spec).unwrap();
            assert_eq!(run.completion.outcome, Outcome::Exited(0));
            started.elapsed()
        })
        .collect();
    times.sort();
    let median = times[10];
    eprintln!("userns sandbox: /bin/true median {median:?} (min {:?}, max {:?})", times[0], times[19]);
    assert!(median < Duration::from_millis(50), "median {median:?}");
}
