//! What to do with each object of a batch answer: the decisions of [`super::fetch`] and
//! [`super::upload`], apart from their I/O. Pure: a batch answer and the objects asked for in,
//! one step per object (in the order asked) out. The shell carries the steps out in order, so an
//! object's error ends the run only when its turn comes, after the objects before it are done.

use std::collections::BTreeMap;

use repovault_common::secret::Secret;

use super::LfsError;
use super::batch_api::{Action, BatchObject, BatchResponse, server_message};
use super::fmt_message;

/// What a fetch does with one object it asked for.
pub(super) enum DownloadStep<'a> {
    /// Download it with this action.
    Download(&'a Action),
    /// The server does not have it: listed in [`super::LfsReport::missing`] with this reason.
    Missing(String),
    /// The fetch ends with this error when it comes to the object.
    Fail(LfsError),
}

/// What an upload does with one object it asked about.
pub(super) enum UploadStep<'a> {
    /// The target has it already (no upload action).
    Present,
    /// Send it with `put`, then confirm with `verify` when the server asked for that.
    Upload {
        put: &'a Action,
        verify: Option<&'a Action>,
    },
    /// The upload ends with this error when it comes to the object.
    Fail(LfsError),
}

/// Refuses an answer that picked a transfer adapter we did not offer (we offer only `basic`);
/// `shown` is the batch endpoint as errors show it.
fn check_transfer(answer: &BatchResponse, shown: &str) -> Result<(), LfsError> {
    match &answer.transfer {
        Some(t) if t != "basic" => Err(LfsError::Protocol {
            url: shown.to_owned(),
            detail: format!("transfer {t:?} was not asked for"),
        }),
        _ => Ok(()),
    }
}

/// The answer's objects by oid (the last one wins if the server repeats an oid).
fn by_oid(answer: &BatchResponse) -> BTreeMap<&str, &BatchObject> {
    answer.objects.iter().map(|o| (o.oid.as_str(), o)).collect()
}

/// The steps of a download batch for `asked` (oids, in order): an object the answer leaves out
/// or gives error 404/410 is missing; another error is the server's refusal; an object with
/// neither an error nor a download action is a protocol error. Server messages are scrubbed of
/// `secrets`; `shown` is the batch endpoint as errors show it.
pub(super) fn download_steps<'a>(
    answer: &'a BatchResponse,
    asked: &[(String, u64)],
    secrets: &[Secret],
    shown: &str,
) -> Result<Vec<DownloadStep<'a>>, LfsError> {
    check_transfer(answer, shown)?;
    let by_oid = by_oid(answer);
    Ok(asked
        .iter()
        .map(|(oid, _)| {
            let Some(obj) = by_oid.get(oid.as_str()) else {
                return DownloadStep::Missing("not in the LFS batch answer".into());
            };
            if let Some(err) = &obj.error {
                let message = server_message(&err.message, secrets);
                if err.code == 404 || err.code == 410 {
                    return DownloadStep::Missing(format!(
                        "the server has no such object: error {}{}",
                        err.code,
                        fmt_message(&message)
                    ));
                }
                return DownloadStep::Fail(LfsError::ObjectRefused {
                    oid: oid.clone(),
                    code: err.code,
                    message,
                });
            }
            match obj.actions.as_ref().and_then(|a| a.download.as_ref()) {
                Some(action) => DownloadStep::Download(action),
                None => DownloadStep::Fail(LfsError::Protocol {
                    url: shown.to_owned(),
                    detail: format!("object {oid}: neither a download action nor an error"),
                }),
            }
        })
        .collect())
}

/// The steps of an upload batch for `asked` (oids, in order): an object the answer leaves out
/// is a protocol error, any per-object error the server's refusal, an object without an upload
/// action already present. Server messages are scrubbed of `secrets`; `shown` is the batch
/// endpoint as errors show it.
pub(super) fn upload_steps<'a>(
    answer: &'a BatchResponse,
    asked: &[(String, u64)],
    secrets: &[Secret],
    shown: &str,
) -> Result<Vec<UploadStep<'a>>, LfsError> {
    check_transfer(answer, shown)?;
    let by_oid = by_oid(answer);
    Ok(asked
        .iter()
        .map(|(oid, _)| {
            let Some(obj) = by_oid.get(oid.as_str()) else {
                return UploadStep::Fail(LfsError::Protocol {
                    url: shown.to_owned(),
                    detail: format!("object {oid}: not in the LFS batch answer"),
                });
            };
            if let Some(err) = &obj.error {
                return UploadStep::Fail(LfsError::ObjectRefused {
                    oid: oid.clone(),
                    code: err.code,
                    message: server_message(&err.message, secrets),
                });
            }
            let actions = obj.actions.as_ref();
            match actions.and_then(|a| a.upload.as_ref()) {
                None => UploadStep::Present,
                Some(put) => UploadStep::Upload {
                    put,
                    verify: actions.and_then(|a| a.verify.as_ref()),
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOWN: &str = "https://lfs.example/acme/web.git/info/lfs/objects/batch";

    fn oid(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn asked(oids: &[char]) -> Vec<(String, u64)> {
        oids.iter().map(|&c| (oid(c), 1)).collect()
    }

    fn answer(json: serde_json::Value) -> BatchResponse {
        serde_json::from_value(json).expect("a batch answer")
    }

    #[test]
    fn download_steps_follow_the_order_asked_and_settle_every_object() {
        let token = Secret::new("ghp_echoedToken000000000000000000000000");
        let answer = answer(serde_json::json!({
            "transfer": "basic",
            "objects": [
                {"oid": oid('b'), "error": {"code": 404, "message": "Object does not exist"}},
                {"oid": oid('a'), "actions": {"download": {"href": "https://cdn/a"}}},
                {"oid": oid('c'), "error": {"code": 410}},
                {"oid": oid('d'), "error": {"code": 422,
                    "message": "bad ghp_echoedToken000000000000000000000000"}},
                {"oid": oid('e'), "actions": {}},
            ],
        }));
        let steps = download_steps(
            &answer,
            &asked(&['a', 'b', 'c', 'd', 'e', 'f']),
            &[token],
            SHOWN,
        )
        .expect("basic transfer");
        assert_eq!(steps.len(), 6);
        assert!(matches!(&steps[0], DownloadStep::Download(a) if a.href == "https://cdn/a"));
        assert!(matches!(&steps[1], DownloadStep::Missing(why)
            if why == "the server has no such object: error 404 (Object does not exist)"));
        assert!(matches!(&steps[2], DownloadStep::Missing(why)
            if why == "the server has no such object: error 410"));
        assert!(
            matches!(&steps[3], DownloadStep::Fail(LfsError::ObjectRefused {
            code: 422, message, ..
        }) if message == "bad [redacted]")
        );
        assert!(
            matches!(&steps[4], DownloadStep::Fail(LfsError::Protocol { url, detail })
            if url == SHOWN && detail.contains("neither a download action nor an error"))
        );
        assert!(matches!(&steps[5], DownloadStep::Missing(why)
            if why == "not in the LFS batch answer"));
    }

    #[test]
    fn upload_steps_tell_present_from_sent_and_refuse_the_rest() {
        let answer = answer(serde_json::json!({
            "objects": [
                {"oid": oid('a')},
                {"oid": oid('b'), "actions": {
                    "upload": {"href": "https://up/b", "header": {"X-Sig": "s"}},
                    "verify": {"href": "https://lfs/verify"},
                }},
                {"oid": oid('c'), "actions": {"upload": {"href": "https://up/c"}}},
                {"oid": oid('d'), "error": {"code": 404, "message": "no"}},
            ],
        }));
        let steps =
            upload_steps(&answer, &asked(&['a', 'b', 'c', 'd', 'e']), &[], SHOWN).expect("ok");
        assert!(matches!(steps[0], UploadStep::Present));
        assert!(
            matches!(&steps[1], UploadStep::Upload { put, verify: Some(v) }
            if put.href == "https://up/b" && put.header["X-Sig"] == "s"
                && v.href == "https://lfs/verify")
        );
        assert!(matches!(&steps[2], UploadStep::Upload { put, verify: None }
            if put.href == "https://up/c"));
        // Any per-object error refuses an upload, 404 too.
        assert!(matches!(
            &steps[3],
            UploadStep::Fail(LfsError::ObjectRefused { code: 404, .. })
        ));
        assert!(
            matches!(&steps[4], UploadStep::Fail(LfsError::Protocol { detail, .. })
            if detail.contains("not in the LFS batch answer"))
        );
    }

    #[test]
    fn a_transfer_we_did_not_offer_is_refused() {
        let answer = answer(serde_json::json!({"transfer": "tus", "objects": []}));
        for result in [
            download_steps(&answer, &asked(&['a']), &[], SHOWN).map(|_| ()),
            upload_steps(&answer, &asked(&['a']), &[], SHOWN).map(|_| ()),
        ] {
            assert!(matches!(result, Err(LfsError::Protocol { detail, .. })
                if detail == "transfer \"tus\" was not asked for"));
        }
    }
}
