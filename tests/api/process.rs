//! Real `portcullis` processes: commands with a clean environment, and running servers.
use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A `portcullis` command with a clean environment of our own.
pub fn portcullis(dir: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_remove("DATABASE_URL").env_remove("RUST_LOG").env_remove("PORTCULLIS_CONFIG");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTCULLIS_")) {
        cmd.env_remove(key);
    }
    // Tests run servers side by side: no fixed metrics port unless a test asks for one.
    cmd.env("PORTCULLIS_METRICS__BIND", "");
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

pub fn run(dir: &Path, env: &[(&str, String)], args: &[&str], stdin: &str) -> Output {
    let mut child = portcullis(dir, env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `portcullis serve` and the address it logged.
pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Served {
    pub fn start(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Self {
        let mut child = portcullis(dir, env).arg("serve").args(args).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let address = line.split("listening on ").nth(1).map(|a| a.trim().to_owned());
                let _ = tx.send((line, address));
            }
        });
        let mut log = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((_, Some(base))) => return Self { child, base },
                Ok((line, None)) => log.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not log its address; its log:\n{}", log.join("\n"));
                }
            }
        }
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("the server did not stop within 10 s of SIGTERM");
    }
}

/// A test that fails half-way still stops its servers.
impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
