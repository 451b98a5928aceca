//! Release assets are streamed, never held whole in memory: an upload reads its file while the
//! request is on the wire, a download writes its file while the answer arrives (both proved
//! against a plain HTTP listener that pauses mid-body), and a 48 MiB asset makes the round trip
//! through the forge simulator (restore upload, export download) with its size and SHA-256
//! intact.

#![allow(clippy::unwrap_used)]

mod support;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{OWNER, endpoint, start};

use repovault_common::forge::github::{
    ExportMode, GitHubClient, GitHubEndpoint, Parts, RestoreOptions, RestoreTarget, export_repo,
    restore_metadata,
};
use repovault_common::secret::Secret;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const MIB: usize = 1 << 20;

/// `len` bytes that differ from one MiB to the next (so a misplaced chunk changes the hash).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).rotate_right(13) as u8)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A client whose API base is a plain listener at `addr` (GitHub Enterprise's layout:
/// `/api/v3` for the API, `/api/uploads` for uploads on the same host).
fn plain_client(addr: std::net::SocketAddr) -> GitHubClient {
    let endpoint = GitHubEndpoint {
        api_url: format!("http://{addr}/api/v3"),
        ca_cert_pem: None,
    };
    GitHubClient::new(&endpoint, Secret::new("ghp_transferTest")).unwrap()
}

/// Reads a request head (through the blank line); returns it lower-cased and the body bytes
/// read past it.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            return (head, got[end + 4..].to_vec());
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the request head ended");
        got.extend_from_slice(&buf[..n]);
    }
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
}

/// Reads body bytes until `body` holds `len`.
async fn read_to(s: &mut TcpStream, body: &mut Vec<u8>, len: usize) {
    let mut buf = vec![0u8; 256 * 1024];
    while body.len() < len {
        let want = (len - body.len()).min(buf.len());
        let n = s.read(&mut buf[..want]).await.unwrap();
        assert!(
            n > 0,
            "connection closed after {} of {len} bytes",
            body.len()
        );
        body.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn an_upload_reads_its_file_while_the_request_is_sent() {
    // 64 MiB: far more than the loopback socket buffers (a few MiB) and the client's read-ahead
    // can hold, so after the server has taken 1 MiB most of the file has not been read yet.
    let len = 64 * MIB;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big.bin");
    let original = pattern(len);
    std::fs::write(&path, &original).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (paused_tx, paused_rx) = oneshot::channel::<()>();
    let (resume_tx, resume_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (head, mut body) = read_head(&mut s).await;
        read_to(&mut s, &mut body, MIB).await;
        paused_tx.send(()).unwrap();
        resume_rx.await.unwrap();
        let expected = content_length(&head).unwrap_or(0);
        read_to(&mut s, &mut body, expected).await;
        let answer = json!({ "id": 1, "name": "big.bin", "size": body.len() }).to_string();
        s.write_all(
            format!(
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        (head, body)
    });

    let client = plain_client(addr);
    let url = format!("http://{addr}/api/uploads/repos/o/r/releases/1/assets?name=big.bin");
    let upload = tokio::spawn({
        let path = path.clone();
        async move {
            client
                .upload_file(&url, "application/octet-stream", &path)
                .await
        }
    });
    paused_rx.await.unwrap();
    // The server has 1 MiB and waits. Change the file's last MiB: a client that streams reads
    // it only now and sends the change; one that read the file whole sends the old bytes.
    let mut changed = original.clone();
    changed[len - MIB..].fill(0xAB);
    {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start((len - MIB) as u64)).unwrap();
        f.write_all(&changed[len - MIB..]).unwrap();
        f.sync_all().unwrap();
    }
    resume_tx.send(()).unwrap();
    let answer = upload.await.unwrap().unwrap();
    let (head, body) = server.await.unwrap();

    assert!(head.starts_with("post /api/uploads/"), "{head}");
    assert_eq!(content_length(&head), Some(len), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert_eq!(answer["size"], json!(len));
    assert_eq!(body.len(), len);
    assert_eq!(
        sha256_hex(&body),
        sha256_hex(&changed),
        "the upload sent the file as it was before the request started: it was read whole"
    );
}

#[tokio::test]
async fn a_download_is_written_while_the_answer_arrives() {
    let len = 16 * MIB;
    let content = pattern(len);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (resume_tx, resume_rx) = oneshot::channel::<()>();
    let server = tokio::spawn({
        let content = content.clone();
        async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (head, _) = read_head(&mut s).await;
            s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            // The first quarter, then a pause until the test has seen it on disk.
            s.write_all(&content[..len / 4]).await.unwrap();
            s.flush().await.unwrap();
            resume_rx.await.unwrap();
            s.write_all(&content[len / 4..]).await.unwrap();
            s.flush().await.unwrap();
            head
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("asset.bin");
    let client = plain_client(addr);
    let url = format!("http://{addr}/api/v3/repos/o/r/releases/assets/1");
    let download = tokio::spawn({
        let dest = dest.clone();
        async move { client.download(&url, &dest).await }
    });
    // A client that streams has written (most of) the first quarter while the server waits;
    // one that buffers the whole answer has written nothing.
    let started = Instant::now();
    loop {
        let on_disk = tokio::fs::metadata(&dest).await.map_or(0, |m| m.len());
        if on_disk >= MIB as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing written while the answer was paused after {} bytes: the download is buffered whole ({on_disk} bytes on disk)",
            len / 4
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    resume_tx.send(()).unwrap();
    let done = download.await.unwrap().unwrap();
    let head = server.await.unwrap();

    assert!(
        head.starts_with("get /api/v3/repos/o/r/releases/assets/1"),
        "{head}"
    );
    assert!(head.contains("accept: application/octet-stream"), "{head}");
    assert_eq!(done.size, len as u64);
    assert_eq!(done.sha256, sha256_hex(&content));
    assert_eq!(std::fs::read(&dest).unwrap(), content);
}

/// The upload exchange of `name` recorded by the simulator: its answer (the stored asset).
fn upload_answer(sim: &forge_sim::ForgeSim, name: &str) -> Value {
    let exchanges = sim.sim().stats.exchanges.lock().clone();
    exchanges
        .iter()
        .find(|x| {
            x.method == "POST"
                && x.path.contains("/assets")
                && x.query.contains(name)
                && x.status == 201
        })
        .and_then(|x| x.response.clone())
        .unwrap_or_else(|| panic!("no upload of {name} among {} exchanges", exchanges.len()))
}

#[tokio::test]
async fn a_large_asset_round_trips_through_the_simulator_intact() {
    let sim = start().await;
    {
        let mut o = sim.sim().options.write();
        o.content_per_minute = 1_000_000;
        o.content_per_hour = 1_000_000;
        o.record_exchanges = true;
    }
    let client = GitHubClient::new(&endpoint(&sim), Secret::new(OWNER)).unwrap();

    // An export tree holding one release of a tag widgets has (v1.1.0: the restore finds the
    // release by tag) with an asset the target lacks. 48 MiB: under the simulator's 64 MiB
    // limit for a recorded request body.
    let len = 48 * MIB;
    let content = pattern(len);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("meta/releases")).unwrap();
    std::fs::create_dir_all(tree.join("releases/7")).unwrap();
    let release = json!({
        "id": 7,
        "tag_name": "v1.1.0",
        "name": "Widgets 1.1",
        "assets": [{ "id": 70, "name": "big.bin", "content_type": "application/octet-stream", "size": len }],
    });
    std::fs::write(
        tree.join("meta/releases/7.json"),
        serde_json::to_vec(&release).unwrap(),
    )
    .unwrap();
    std::fs::write(tree.join("releases/7/big.bin"), &content).unwrap();

    let opts = RestoreOptions {
        backup_id: "B-transfer".parse().expect("backup id"),
        parts: Parts {
            issues: false,
            releases: true,
            labels: false,
            settings: false,
        },
        branches_present: Default::default(),
        journal: tmp.path().join("journal.json"),
        pace: None,
        access: Default::default(),
    };
    let target = RestoreTarget {
        client: &client,
        owner: "acme",
        name: "widgets",
    };
    let report = restore_metadata(&tree, target, &opts, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.created.get("asset"), Some(&1), "{report:?}");

    // What the simulator stored, as its answer to the upload says.
    let stored = upload_answer(&sim, "big.bin");
    assert_eq!(stored["size"], json!(len), "{stored}");
    assert_eq!(
        stored["digest"],
        json!(format!("sha256:{}", sha256_hex(&content))),
        "{stored}"
    );
    sim.sim().options.write().record_exchanges = false;

    // And back: an export downloads it to the same bytes.
    let out = tmp.path().join("export");
    let exported = export_repo(&client, "acme", "widgets", &out, None, ExportMode::Full)
        .await
        .unwrap();
    assert_eq!(
        exported.components["releases"].status,
        repovault_common::domain::ComponentState::Included
    );
    let release_id = std::fs::read_dir(out.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|dir| dir.join("big.bin").is_file())
        .unwrap_or_else(|| panic!("no release directory holds big.bin"));
    let downloaded = std::fs::read(release_id.join("big.bin")).unwrap();
    assert_eq!(downloaded.len(), len);
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&content));
    // No temporary file is left in the tree.
    assert_no_partial(&out);
}

/// No `.partial` file or directory anywhere under `dir`.
fn assert_no_partial(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .contains("partial"),
            "left behind: {}",
            path.display()
        );
        if path.is_dir() {
            assert_no_partial(&path);
        }
    }
}
