//! End to end on virtual boards: a CoAPS case with `[sniffer]` and `[[snapshot]]` runs with a
//! virtual sniffer on its air. The air's transcript must equal the client board's own engine
//! transcript; the first run fails with a pending snapshot, the accepted snapshot then passes,
//! and the pcap holds the capture.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(case: &Path, out: &Path) -> (Option<i32>, serde_json::Value, String) {
    let output = Command::new(EXE)
        .arg("run")
        .arg(case)
        .arg("--variants-dir")
        .arg(repo().join("firmware/variants"))
        .arg("--variant")
        .arg("ncs-v2.2.0-psk")
        .arg("--out")
        .arg(out)
        // Pending snapshots are written even where a CI variable is set.
        .env("INSTA_UPDATE", "new")
        .output()
        .expect("run ot-hil");
    let results = std::fs::read_to_string(out.join("results.json")).unwrap_or_default();
    let json = serde_json::from_str(&results).unwrap_or(serde_json::Value::Null);
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap_or_default();
    (
        output.status.code(),
        json,
        format!(
            "{}\n{}\n{junit}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn air_lines(results: &serde_json::Value) -> Vec<String> {
    let text = results.to_string();
    let v: serde_json::Value = results.clone();
    let mut out = Vec::new();
    let cases = v
        .get("cases")
        .or_else(|| v.get("results"))
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    for c in cases {
        if let Some(lines) = c.pointer("/tails/air").and_then(|a| a.as_array()) {
            out.extend(lines.iter().filter_map(|l| l.as_str().map(str::to_string)));
        }
    }
    assert!(!out.is_empty(), "no air lines in results: {text}");
    out
}

/// CoAP messages tshark finds in `pcap` (code, Uri-Path, payload hex), decrypting 802.15.4 with
/// the case's network key and, given `keys`, DTLS with that key log: the options README gives.
fn tshark_coap(pcap: &Path, keys: Option<&Path>) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args([
        "-o",
        "uat:ieee802154_keys:\"00112233445566778899aabbccddeeff\",\"0\",\"Thread hash\"",
        "-o",
        "6lowpan.context0:fdde:ad00:beef::/64",
        "-d",
        "udp.port==61631,coap",
    ]);
    if let Some(keys) = keys {
        cmd.arg("-o")
            .arg(format!("tls.keylog_file:{}", keys.display()));
    }
    let out = cmd
        .args(["-Y", "coap", "-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "coap.code",
            "-e",
            "coap.opt.uri_path",
            "-e",
            "data.data",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn decrypts_coaps_with_tshark(pcap: &Path, keys: &Path) {
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("tshark not installed: DTLS key log not checked with Wireshark");
        return;
    }
    // Thread's own CoAP (TMF, port 61631) is not encrypted by DTLS; the CoAPS exchange is.
    let plain = tshark_coap(pcap, None);
    assert!(
        !plain.iter().any(|l| l.contains("test-resource")),
        "without the key log the CoAPS records stay encrypted: {plain:?}"
    );
    let coap = tshark_coap(pcap, Some(keys));
    // GET test-resource (code 1), answered 2.05 Content (69) with `hello` (`coaps set hello`).
    assert!(coap.contains(&"1|test-resource|".to_string()), "{coap:?}");
    assert!(coap.contains(&"69||68656c6c6f".to_string()), "{coap:?}");
}

#[test]
fn sniffer_transcript_snapshot_on_virtual_boards() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases");
    std::fs::create_dir_all(cases.join("fragments")).unwrap();
    std::fs::copy(
        repo().join("testcases/fragments/form-network.toml"),
        cases.join("fragments/form-network.toml"),
    )
    .unwrap();
    let case_text = std::fs::read_to_string(repo().join("testcases/coaps-psk.toml")).unwrap();
    // The case watches itself: `[sniffer]` and a `psk-handshake` snapshot of client -> server.
    assert!(
        case_text.contains("[sniffer]") && case_text.contains("name = \"psk-handshake\""),
        "{case_text}"
    );
    let case = cases.join("coaps-psk-air.toml");
    std::fs::write(&case, &case_text).unwrap();

    // First run: no stored snapshot, so the case fails and leaves a pending one.
    let out1 = dir.path().join("out1");
    let (code, results, text) = run(&case, &out1);
    assert_eq!(code, Some(1), "{text}");
    let air = air_lines(&results);
    let joined = air.join("\n");
    assert!(
        joined.contains("snapshot psk-handshake: air transcript = client's engine transcript"),
        "{joined}"
    );
    assert!(joined.contains("dtls connection 1:"), "{joined}");
    assert!(joined.contains("bad_mic=0"), "{joined}");
    let pending = cases.join("snapshots/coaps-psk-air__psk-handshake__ncs-v2.2.0-psk.snap.new");
    let pending_text = std::fs::read_to_string(&pending).expect("pending snapshot");
    assert!(
        pending_text.contains("S->C SERVER_HELLO chosen_suite=PSK_WITH_AES_128_CCM_8"),
        "{pending_text}"
    );
    assert!(text.contains("accept it by renaming it to .snap"), "{text}");
    let pcap = out1.join("logs/coaps-psk-air/ncs-v2.2.0-psk/air.pcap");
    let bytes = std::fs::read(&pcap).expect("pcap");
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
    assert_eq!(u32::from(reader.header().datalink), 283);
    let mut frames = 0;
    let mut first = None;
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        first.get_or_insert(p.timestamp);
        frames += 1;
    }
    assert!(frames > 20, "{frames} frames");
    // Real epoch time: the first packet within a minute of the run's start (results.json).
    let started = results["started"].as_str().expect("start time");
    let started = humantime::parse_rfc3339(started)
        .expect("RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let first = first.expect("a packet");
    assert!(
        first.abs_diff(started) < std::time::Duration::from_secs(60),
        "first packet at {first:?} since the epoch, run started at {started:?}"
    );
    assert!(
        text.contains("air.pcap"),
        "the report points at the pcap: {text}"
    );
    // The DTLS key log next to the pcap: Wireshark decrypts the CoAPS exchange with it.
    let keys = pcap.with_file_name("dtls-keys.log");
    let key_text = std::fs::read_to_string(&keys).expect("dtls-keys.log");
    let line = key_text.lines().next().expect("a key log line");
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!(fields[0], "CLIENT_RANDOM");
    assert!(fields[1].len() == 64 && fields[2].len() == 96, "{line}");
    decrypts_coaps_with_tshark(&pcap, &keys);

    // Accept it (rename the pending file), run again: the case passes.
    std::fs::rename(&pending, pending.with_extension("")).unwrap();
    let out2 = dir.path().join("out2");
    let (code, results, text) = run(&case, &out2);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        air_lines(&results)
            .iter()
            .any(|l| l.starts_with("snapshot psk-handshake: matches"))
    );

    // A different stored handshake: the case fails with a diff.
    let snap = pending.with_extension("");
    let stored = std::fs::read_to_string(&snap).unwrap();
    std::fs::write(
        &snap,
        stored.replace("PSK_WITH_AES_128_CCM_8", "ECJPAKE_WITH_AES_128_CCM_8"),
    )
    .unwrap();
    let out3 = dir.path().join("out3");
    let (code, _, text) = run(&case, &out3);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("+S->C SERVER_HELLO chosen_suite=PSK_WITH_AES_128_CCM_8"),
        "{text}"
    );
}
