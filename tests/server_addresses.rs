//! memcached servers written as IPv6 literals: `[::1]:11211` (and `[::1]:11211:2` with a
//! weight) works end to end against a memcached listening on `::1`; forms that cannot be read
//! one way only (`::1:11211`) are configuration errors that say how to write the address.

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv6Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::calls::{Calls, assert_hit};
use harness::{ServerProcess, TestServer};
use mintcache::config::{Config, ServerSpec};

/// A memcached listening on `::1` only, killed on drop.
struct Ipv6Memcached {
    child: Child,
    port: u16,
}

impl Ipv6Memcached {
    fn start() -> Self {
        let port = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("IPv6 loopback (::1) is not available on this machine");
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "::1", "-p", &port.to_string(), "-U", "0", "-m", "64"]);
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start memcached ({e}); install it (apt-get install memcached)")
            });
        let memcached = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while memcached.try_command("version\r\n").is_none() {
            assert!(
                Instant::now() < deadline,
                "memcached did not answer on [::1]:{port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        memcached
    }

    /// Sends one command and returns the first reply line.
    fn try_command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect((Ipv6Addr::LOCALHOST, self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(command.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line)
    }
}

impl Drop for Ipv6Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_memcached_on_an_ipv6_literal_serves() {
    let mc = Ipv6Memcached::start();
    for written in [format!("[::1]:{}", mc.port), format!("[::1]:{}:2", mc.port)] {
        let spec: ServerSpec = written.parse().unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(spec.addr, format!("[::1]:{}", mc.port));
        let mut cfg = Config::default();
        cfg.memcached.servers = vec![spec];
        let server = TestServer::start(cfg).await;
        let c = Calls::new(server.client().await);
        c.set(b"k", written.as_bytes()).await;
        assert_hit(&c.get(b"k").await, written.as_bytes());
        // The value is in that memcached.
        let reply = mc.try_command("mg :1:k v\r\n").expect("memcached answers");
        assert!(reply.starts_with("VA "), "{reply:?}");
        server.stop().await;
    }
}

#[test]
fn ambiguous_addresses_are_configuration_errors_that_say_how_to_write_them() {
    for bad in [
        "::1:11211",
        "fe80::1:11211:2",
        "::1",
        "[::1]",
        "[::1]11211",
        "[::1:11211",
    ] {
        let out = ServerProcess::run(
            &["--check-config"],
            &[("MINTCACHE_MEMCACHED__SERVERS", bad)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(stderr.contains("memcached.servers"), "{bad:?}: {stderr}");
        assert!(stderr.contains("[::1]:11211"), "{bad:?}: {stderr}");
    }
    // The effective configuration prints bracketed addresses that read back the same.
    let out = ServerProcess::run(
        &["--check-config"],
        &[(
            "MINTCACHE_MEMCACHED__SERVERS",
            "[::1]:11211:3, [2001:db8::7]:11212",
        )],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"[::1]:11211:3\""), "{stdout}");
    assert!(stdout.contains("\"[2001:db8::7]:11212:1\""), "{stdout}");
}
