//! A `cluster-load agents` child process registering agents through a node and reporting them
//! into its database, with its output collected for the test to read.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

const LOAD: &str = env!("CARGO_BIN_EXE_cluster-load");

pub struct Load {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Load {
    /// `count` agents through the node at `home`, reporting every `keepalive_s` seconds for
    /// `duration_s` seconds.
    pub fn start(home: &Path, count: u32, duration_s: u32, keepalive_s: u32) -> Load {
        let mut child = Command::new(LOAD)
            .args(["agents", "--home"])
            .arg(home)
            .args(["--count", &count.to_string()])
            .args(["--duration", &duration_s.to_string()])
            .args(["--keepalive-interval", &keepalive_s.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cluster-load starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Load { child, lines }
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Start times (Unix seconds) of the keepalive rounds reported so far.
    pub fn rounds(&self) -> Vec<f64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("keepalive round "))
            .filter_map(|rest| rest.split(" at ").nth(1))
            .filter_map(|rest| rest.split(':').next())
            .filter_map(|t| t.trim().parse().ok())
            .collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
