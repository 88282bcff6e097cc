//! The auth record as stored (#16): records written by earlier versions still log their user
//! in and are rewritten in the current form; malformed records log nobody in, answer no 5xx
//! and end their session. Planted straight into the session store, read through real requests.

mod common;

use std::sync::Arc;

use common::TestApp;
use login_manager::{AuthEvent, EndReason};
use serde_json::{json, Value};
use tower_sessions::{session::Id, Session, SessionStore};

const AUTH_KEY: &str = "_auth";

/// A session holding `record` under the auth key, saved in the app's store; its id.
async fn plant(app: &TestApp, record: Value) -> String {
    let session = Session::new(None, Arc::new(app.store.clone()), None);
    session.insert_value(AUTH_KEY, record).await.unwrap();
    session.save().await.unwrap();
    session.id().unwrap().to_string()
}

/// The auth record of the session with this id, as stored.
async fn stored_record(app: &TestApp, id: &str) -> Option<Value> {
    let id: Id = id.parse().unwrap();
    let record = app.store.load(&id).await.unwrap()?;
    record.data.get(AUTH_KEY).cloned()
}

/// The fields of a current record, for building other forms of it.
struct Fields {
    login_at: i64,
    fresh_at: Option<i64>,
    last_seen: i64,
    digest: String,
    protection_id: String,
}

/// Logs alice in and returns the fields of her record.
async fn alices_fields(app: &TestApp) -> Fields {
    let mut client = app.client();
    client.login("alice").await;
    let value = stored_record(app, &client.session_id().unwrap())
        .await
        .expect("a record after login");
    let text = value.as_str().expect("the record is one string");
    let parts: Vec<&str> = text.splitn(8, '|').collect();
    assert_eq!(parts.len(), 8, "{text}");
    assert_eq!(parts[7], "1", "the user id comes last: {text}");
    Fields {
        login_at: parts[0].parse().unwrap(),
        fresh_at: (!parts[1].is_empty()).then(|| parts[1].parse().unwrap()),
        last_seen: parts[2].parse().unwrap(),
        digest: parts[4].to_owned(),
        protection_id: parts[5].to_owned(),
    }
}

#[tokio::test]
async fn records_of_earlier_versions_still_log_their_user_in() {
    let app = TestApp::new();
    let f = alices_fields(&app).await;
    // Seven fields (before the login index) and eight (with a login id), as JSON arrays.
    let seven = json!([
        1,
        f.digest,
        f.login_at,
        f.fresh_at,
        f.last_seen,
        f.protection_id,
        false
    ]);
    let eight = json!([
        1,
        f.digest,
        f.login_at,
        f.fresh_at,
        f.last_seen,
        f.protection_id,
        false,
        null
    ]);
    for old in [seven, eight] {
        let id = plant(&app, old.clone()).await;
        let mut client = app.client();
        client.set_session_id(&id);
        assert!(
            client.whoami().await.starts_with("alice fresh=true"),
            "{old}"
        );
        // Nothing was due: the record is read, not rewritten.
        assert_eq!(stored_record(&app, &id).await, Some(old));
    }

    // An old record whose `last_seen` is due is rewritten in the current form.
    let stale_seen = f.last_seen - 20 * 60;
    let old = json!([
        1,
        f.digest,
        f.login_at,
        f.fresh_at,
        stale_seen,
        f.protection_id,
        false
    ]);
    let id = plant(&app, old).await;
    let mut client = app.client();
    client.set_session_id(&id);
    assert!(client.whoami().await.starts_with("alice"));
    let rewritten = stored_record(&app, &id).await.expect("still logged in");
    let text = rewritten.as_str().expect("rewritten as one string");
    assert!(
        text.ends_with(&format!("|{}||1", f.protection_id)),
        "{text}"
    );
    assert!(client.whoami().await.starts_with("alice"));
}

#[tokio::test]
async fn malformed_auth_records_log_nobody_in_and_end_their_session() {
    let app = TestApp::new();
    let f = alices_fields(&app).await;
    let current = |edit: &dyn Fn(&mut Vec<String>)| {
        let mut parts = vec![
            f.login_at.to_string(),
            f.fresh_at.map(|t| t.to_string()).unwrap_or_default(),
            f.last_seen.to_string(),
            "0".to_owned(),
            f.digest.clone(),
            f.protection_id.clone(),
            String::new(),
            "1".to_owned(),
        ];
        edit(&mut parts);
        Value::String(parts.join("|"))
    };
    let malformed = [
        Value::String("garbage".into()),
        Value::String(String::new()),
        current(&|p| {
            p.pop();
        }),
        current(&|p| p[0] = "yesterday".into()),
        current(&|p| p[3] = "yes".into()),
        current(&|p| p[4] = "short".into()),
        current(&|p| p[4] = format!("{}|", &f.digest[..21])),
        current(&|p| p[5] = "ünïcödé-16-bytes".into()),
        current(&|p| p[7] = "{not json".into()),
        current(&|p| p[7] = "\"alice\"".into()),
        json!(42),
        json!({"user_id": 1}),
        json!([1, f.digest, f.login_at]),
        json!([
            1,
            "short",
            f.login_at,
            null,
            f.last_seen,
            f.protection_id,
            false
        ]),
    ];
    for record in malformed {
        let id = plant(&app, record.clone()).await;
        let mut client = app.client();
        client.set_session_id(&id);
        let reply = client.get("/protected").await;
        assert!(
            !reply.status.is_server_error() && !reply.status.is_success(),
            "{record}: {}",
            reply.status
        );
        assert_eq!(client.whoami().await, "anonymous", "{record}");
        assert!(
            !app.store.exists(&id).await,
            "{record}: the session holding it is ended"
        );
    }

    // Well-formed, but the digest of another password: the stale-hash path, with its event.
    let stale = current(&|p| p[4] = "A".repeat(22));
    let id = plant(&app, stale).await;
    let mut client = app.client();
    client.set_session_id(&id);
    assert_eq!(client.whoami().await, "anonymous");
    assert!(!app.store.exists(&id).await);
    assert!(app.events().contains(&AuthEvent::SessionEnded {
        user_id: "1".into(),
        reason: EndReason::AuthHashChanged,
    }));
}
