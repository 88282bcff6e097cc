//! Every live login of a user (#17), through real requests: the list, ending one, ending all
//! the others, an admin ending all, the bound, the order of writes, cookie sessions, and two
//! instances sharing the stores. The stores themselves are checked on every backend by the
//! conformance suite (`tests/conformance.rs`, `tests/redis_cluster.rs`).

mod common;

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

use async_trait::async_trait;
use common::{Client, CountingStore, TestApp};
use login_manager::{
    AuthEvent, LoginIndex, LoginManager, LoginStore, LoginTouch, MemoryLoginStore, StoredLogin,
};
use serde_json::Value;

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

/// A login store that counts calls and can be made to fail, around a memory store.
#[derive(Clone, Default)]
struct Logins {
    inner: MemoryLoginStore,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Logins {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn check(&self) -> login_manager::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(login_manager::Error::Store("login store is down".into()));
        }
        Ok(())
    }

    async fn entries(&self, user: u32) -> Vec<StoredLogin> {
        self.inner.list(&user.to_string()).await.unwrap()
    }
}

#[async_trait]
impl LoginStore for Logins {
    async fn put(&self, l: StoredLogin, max: usize) -> login_manager::Result<Vec<StoredLogin>> {
        self.check()?;
        self.inner.put(l, max).await
    }
    async fn get(&self, u: &str, id: &str) -> login_manager::Result<Option<StoredLogin>> {
        self.check()?;
        self.inner.get(u, id).await
    }
    async fn touch(&self, u: &str, id: &str, t: LoginTouch) -> login_manager::Result<bool> {
        self.check()?;
        self.inner.touch(u, id, t).await
    }
    async fn list(&self, u: &str) -> login_manager::Result<Vec<StoredLogin>> {
        self.check()?;
        self.inner.list(u).await
    }
    async fn delete(&self, u: &str, id: &str) -> login_manager::Result<Option<StoredLogin>> {
        self.check()?;
        self.inner.delete(u, id).await
    }
    async fn delete_for_user(&self, u: &str) -> login_manager::Result<Vec<StoredLogin>> {
        self.check()?;
        self.inner.delete_for_user(u).await
    }
    async fn delete_expired(&self) -> login_manager::Result<u64> {
        self.check()?;
        self.inner.delete_expired().await
    }
}

fn indexed(logins: &Logins, max: usize) -> TestApp {
    let logins = logins.clone();
    TestApp::with_store(move |m, store| {
        m.login_index(LoginIndex::new(logins, store.clone()).max_logins_per_user(max))
    })
}

fn browser(app: &TestApp, user_agent: &str) -> Client {
    let mut client = app.client();
    client.user_agent = user_agent.to_owned();
    client
}

async fn list(client: &mut Client) -> Vec<Value> {
    let reply = client.get("/logins").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str::<Value>(&reply.body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn ids(logins: &[Value]) -> Vec<String> {
    logins
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_live_login_is_listed_this_one_first_and_marked() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = browser(&app, FIREFOX_LINUX);
    let mut phone = browser(&app, SAFARI_MAC);
    let mut tablet = browser(&app, "no browser at all");
    laptop.login("alice").await;
    phone.login_remembered("alice").await;
    tablet.login("alice").await;
    app.client().login("bob").await;

    let seen = list(&mut laptop).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0]["current"], true);
    assert_eq!(seen[0]["browser"], "Firefox 121.0");
    assert_eq!(seen[0]["system"], "Linux");
    assert!(seen[1..].iter().all(|l| l["current"] == false));
    let safari = seen.iter().find(|l| l["browser"] == "Safari 17.1").unwrap();
    assert!(safari["system"].as_str().unwrap().starts_with("Mac OSX"));
    assert_eq!(safari["remember_me"], true);
    assert!(seen.iter().any(|l| l["browser"] == "Unknown browser"));

    // Each browser sees the same logins, itself marked.
    let from_phone = list(&mut phone).await;
    let mut a = ids(&seen);
    let mut b = ids(&from_phone);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(from_phone[0]["browser"], "Safari 17.1");
}

#[tokio::test]
async fn ending_another_login_makes_its_next_request_anonymous() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    let mut phone = app.client();
    laptop.login("alice").await;
    phone.login("alice").await;
    let phone_session = phone.session_id().unwrap();
    let laptop_session = laptop.session_id().unwrap();

    let phone_id = list(&mut phone).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        laptop.post(&format!("/logins/{phone_id}/end")).await.body,
        "true"
    );

    assert!(
        !app.store.exists(&phone_session).await,
        "the session is deleted"
    );
    assert_eq!(phone.whoami().await, "anonymous");
    assert_eq!(laptop.whoami().await, "alice fresh=true remembered=false");
    assert_eq!(
        laptop.session_id().unwrap(),
        laptop_session,
        "ours keeps its id"
    );
    assert_eq!(list(&mut laptop).await.len(), 1);
    assert!(app.events().iter().any(|e| matches!(e,
        AuthEvent::LoginEnded { user_id, login_id } if user_id == "1" && *login_id == phone_id)));
}

#[tokio::test]
async fn ending_a_remembered_login_also_kills_its_remember_token() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    let mut phone = app.client();
    laptop.login("alice").await;
    phone.login_remembered("alice").await;
    let phone_id = list(&mut phone).await[0]["id"].as_str().unwrap().to_owned();

    laptop.post(&format!("/logins/{phone_id}/end")).await;
    phone.close_browser();
    assert_eq!(
        phone.whoami().await,
        "anonymous",
        "the cookie restores nothing"
    );
    assert!(app.remember_store.is_empty());
}

#[tokio::test]
async fn a_remembered_browser_is_one_entry_whatever_sessions_it_restores() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut phone = app.client();
    phone.login_remembered("alice").await;
    let first = list(&mut phone).await;
    assert_eq!(first[0]["restored"], false);

    for _ in 0..3 {
        let before = phone.session_id().unwrap();
        phone.close_browser();
        assert_eq!(phone.whoami().await, "alice fresh=false remembered=true");
        // The superseded session is ended, not merely forgotten by the browser.
        assert!(!app.store.exists(&before).await);
    }
    let now = list(&mut phone).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["id"], first[0]["id"]);
    assert_eq!(now[0]["restored"], true);
    let entry = &logins.entries(1).await[0];
    assert_eq!(
        entry.session_id,
        phone.session_id(),
        "the entry follows the session"
    );
}

#[tokio::test]
async fn end_other_logins_keeps_this_session_with_its_id() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    laptop.login_remembered("alice").await;
    let mut others = Vec::new();
    for remember in [false, true, false] {
        let mut other = app.client();
        if remember {
            other.login_remembered("alice").await;
        } else {
            other.login("alice").await;
        }
        others.push(other);
    }
    let mut bob = app.client();
    bob.login("bob").await;
    let session = laptop.session_id().unwrap();

    assert_eq!(laptop.post("/logins/end-others").await.body, "3");

    for other in &mut others {
        other.close_browser(); // remember cookies must not bring them back either
        assert_eq!(other.whoami().await, "anonymous");
    }
    assert_eq!(laptop.whoami().await, "alice fresh=true remembered=false");
    assert_eq!(laptop.session_id().unwrap(), session);
    assert_eq!(list(&mut laptop).await.len(), 1);
    assert_eq!(
        app.remember_store.len(),
        1,
        "only this browser's token is left"
    );
    laptop.close_browser();
    assert_eq!(laptop.whoami().await, "alice fresh=false remembered=true");
    assert_eq!(bob.whoami().await, "bob fresh=true remembered=false");
}

#[tokio::test]
async fn ending_the_current_login_is_a_logout() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    laptop.login_remembered("alice").await;
    let own = list(&mut laptop).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = laptop.session_id().unwrap();

    assert_eq!(
        laptop.post(&format!("/logins/{own}/end")).await.body,
        "true"
    );
    assert!(!app.store.exists(&session).await);
    assert!(laptop.remember_cookie().is_none());
    assert_eq!(laptop.whoami().await, "anonymous");
    assert!(logins.entries(1).await.is_empty());
}

#[tokio::test]
async fn another_users_login_cannot_be_ended_by_its_id() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut alice = app.client();
    let mut bob = app.client();
    alice.login("alice").await;
    bob.login("bob").await;
    let bobs = list(&mut bob).await[0]["id"].as_str().unwrap().to_owned();

    assert_eq!(
        alice.post(&format!("/logins/{bobs}/end")).await.body,
        "false"
    );
    assert_eq!(alice.post("/logins/no-such-login/end").await.body, "false");
    assert_eq!(bob.whoami().await, "bob fresh=true remembered=false");
}

#[tokio::test]
async fn end_all_logins_ends_every_session_and_token_of_the_user_only() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut browsers = Vec::new();
    for remember in [true, false, true] {
        let mut client = app.client();
        if remember {
            client.login_remembered("alice").await;
        } else {
            client.login("alice").await;
        }
        browsers.push(client);
    }
    let mut bob = app.client();
    bob.login_remembered("bob").await;

    assert_eq!(app.manager.end_all_logins(&1).await.unwrap(), 3);
    for client in &mut browsers {
        assert_eq!(client.whoami().await, "anonymous");
        client.close_browser();
        assert_eq!(client.whoami().await, "anonymous");
    }
    assert!(logins.entries(1).await.is_empty());
    assert_eq!(bob.whoami().await, "bob fresh=true remembered=false");
    assert_eq!(app.remember_store.len(), 1, "bob's token stays");
}

#[tokio::test]
async fn logout_removes_the_login_from_the_list() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    let mut phone = app.client();
    laptop.login("alice").await;
    phone.login_remembered("alice").await;
    phone.post("/logout").await;
    let left = list(&mut laptop).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
}

#[tokio::test]
async fn logging_in_again_replaces_this_browsers_entry() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    laptop.login_remembered("alice").await;
    laptop.login("alice").await;
    laptop.login("bob").await; // another user on the same browser
    laptop.login("alice").await;
    assert_eq!(logins.entries(1).await.len(), 1);
    assert!(logins.entries(2).await.is_empty());
    assert!(
        app.remember_store.is_empty(),
        "the replaced login's token is gone"
    );
}

#[tokio::test]
async fn a_login_beyond_the_bound_ends_the_least_recently_used_one() {
    let logins = Logins::default();
    let app = indexed(&logins, 2);
    let mut first = app.client();
    let mut second = app.client();
    let mut third = app.client();
    first.login_remembered("alice").await;
    second.login("alice").await;
    third.login("alice").await;

    assert_eq!(first.whoami().await, "anonymous");
    first.close_browser();
    assert_eq!(first.whoami().await, "anonymous", "its token went too");
    assert_eq!(second.whoami().await, "alice fresh=true remembered=false");
    assert_eq!(third.whoami().await, "alice fresh=true remembered=false");
    assert_eq!(list(&mut third).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_logins_keep_the_index_within_its_bound() {
    let logins = Logins::default();
    let app = indexed(&logins, 5);
    let mut clients: Vec<Client> = (0..50).map(|_| app.client()).collect();
    let tasks = clients.drain(..).map(|mut client| {
        tokio::spawn(async move {
            client.login("alice").await;
            client
        })
    });
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    let entries = logins.entries(1).await;
    assert!(entries.len() <= 5, "{} entries", entries.len());
    let mut logged_in = 0;
    for client in &mut clients {
        if client.whoami().await != "anonymous" {
            logged_in += 1;
        }
    }
    // Every login still alive is listed, and every listed one is alive.
    assert_eq!(logged_in, entries.len());
}

#[tokio::test]
async fn a_logged_in_request_costs_the_index_nothing() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    laptop.login("alice").await;
    let before = logins.calls();
    for _ in 0..20 {
        assert_eq!(laptop.get("/protected").await.status, 200);
    }
    assert_eq!(logins.calls(), before);
}

#[tokio::test]
async fn a_password_change_ends_the_other_logins_at_once() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    let mut phone = app.client();
    laptop.login("alice").await;
    phone.login_remembered("alice").await;
    let phone_session = phone.session_id().unwrap();

    laptop.post("/password/new-secret").await;
    assert!(!app.store.exists(&phone_session).await);
    let left = list(&mut laptop).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(logins.entries(1).await[0].session_id, laptop.session_id());
}

#[tokio::test]
async fn confirm_login_moves_the_entry_to_the_new_session_id() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);
    let mut laptop = app.client();
    laptop.login("alice").await;
    let id = list(&mut laptop).await[0]["id"].clone();
    laptop.post("/confirm").await;
    let entries = logins.entries(1).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].session_id, laptop.session_id());
    assert_eq!(list(&mut laptop).await[0]["id"], id);
}

/// Order of writes: the session gets its new id first, then the entry, then the login. A
/// failure after the entry leaves an entry for a session without a login, which can be
/// listed and ended; a failure before it leaves no login at all.
#[tokio::test]
async fn a_failure_between_the_writes_leaves_no_login_that_is_not_listed() {
    let logins = Logins::default();
    let app = indexed(&logins, 50);

    // The index is down: the login fails, and the browser is not logged in.
    logins.failing.store(true, Ordering::SeqCst);
    let mut laptop = app.client();
    assert_eq!(laptop.login("alice").await.status, 503);
    logins.failing.store(false, Ordering::SeqCst);
    assert_eq!(laptop.whoami().await, "anonymous");
    assert!(logins.entries(1).await.is_empty());

    // The session store fails after the entry was written (its `save` of the login): the
    // entry is listed, names a session that holds no login, and can be ended.
    let failing_saves = SaveFailing::new(&app.store);
    let layer = login_manager_sessions::SessionBackend::custom(failing_saves.clone())
        .into_layer(
            login_manager_sessions::SessionConfig::new()
                .cookie(login_manager::CookieOptions::new("id").secure(false)),
        )
        .unwrap();
    let app = TestApp::with_session_layer_and(layer, {
        let logins = logins.clone();
        let store = failing_saves.clone();
        move |m| m.login_index(LoginIndex::new(logins, store))
    });
    let mut phone = app.client();
    failing_saves.fail_updates(true);
    let reply = phone.login("alice").await;
    failing_saves.fail_updates(false);
    assert_eq!(reply.status, 503);
    assert_eq!(
        phone.whoami().await,
        "anonymous",
        "no session holds the login"
    );
    let entries = logins.entries(1).await;
    assert_eq!(entries.len(), 1, "but its entry is listed");
    let mut other = app.client();
    other.login("alice").await;
    assert_eq!(list(&mut other).await.len(), 2);
    assert_eq!(other.post("/logins/end-others").await.body, "1");
    assert_eq!(list(&mut other).await.len(), 1);
}

/// A session store that can fail `save` (an update) while `create` works.
#[derive(Clone, Debug)]
struct SaveFailing {
    inner: CountingStore,
    fail: Arc<AtomicBool>,
}

impl SaveFailing {
    fn new(inner: &CountingStore) -> Self {
        Self {
            inner: inner.clone(),
            fail: Arc::default(),
        }
    }

    fn fail_updates(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }
}

#[async_trait]
impl tower_sessions::SessionStore for SaveFailing {
    async fn create(
        &self,
        record: &mut tower_sessions::session::Record,
    ) -> tower_sessions::session_store::Result<()> {
        self.inner.create(record).await
    }
    async fn save(
        &self,
        record: &tower_sessions::session::Record,
    ) -> tower_sessions::session_store::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(tower_sessions::session_store::Error::Backend("down".into()));
        }
        self.inner.save(record).await
    }
    async fn load(
        &self,
        id: &tower_sessions::session::Id,
    ) -> tower_sessions::session_store::Result<Option<tower_sessions::session::Record>> {
        self.inner.load(id).await
    }
    async fn delete(
        &self,
        id: &tower_sessions::session::Id,
    ) -> tower_sessions::session_store::Result<()> {
        self.inner.delete(id).await
    }
}

#[tokio::test]
async fn two_instances_share_the_list_and_the_ending() {
    let logins = Logins::default();
    let a = indexed(&logins, 50);
    let b = a.second_instance({
        let logins = logins.clone();
        move |m, store| m.login_index(LoginIndex::new(logins, store.clone()))
    });
    let mut on_a = a.client();
    let mut on_b = b.client();
    on_a.login("alice").await;
    on_b.login_remembered("alice").await;
    assert_eq!(list(&mut on_b).await.len(), 2);

    assert_eq!(on_a.post("/logins/end-others").await.body, "1");
    assert_eq!(on_b.whoami().await, "anonymous");
    on_b.close_browser();
    assert_eq!(on_b.whoami().await, "anonymous");
    assert_eq!(on_a.whoami().await, "alice fresh=true remembered=false");
}

#[tokio::test]
async fn without_an_index_the_login_api_says_how_to_enable_it() {
    let app = TestApp::new();
    let mut laptop = app.client();
    laptop.login("alice").await;
    let reply = laptop.get("/logins").await;
    assert_eq!(reply.status, 500);
    let err = app.manager.end_all_logins(&1).await.unwrap_err();
    assert!(err.to_string().contains("login_index"), "{err}");
}

async fn cookie_app(logins: &Logins) -> TestApp {
    use login_manager_sessions::{Key, SessionBackend, SessionConfig};
    let config = SessionConfig::new()
        .cookie(login_manager::CookieOptions::new("id").secure(false))
        .secret_key(Key::generate());
    let layer = SessionBackend::from_url("cookie:private")
        .await
        .expect("cookie backend")
        .into_layer(config)
        .expect("cookie session layer");
    let logins = logins.clone();
    TestApp::with_session_layer_and(layer, move |m: LoginManager<_>| {
        m.login_index(LoginIndex::for_cookie_sessions(logins))
    })
}

#[tokio::test]
async fn cookie_sessions_end_when_their_login_is_ended() {
    let logins = Logins::default();
    let app = cookie_app(&logins).await;
    let mut laptop = app.client();
    let mut phone = app.client();
    laptop.login("alice").await;
    phone.login("alice").await;
    let stolen_copy = phone.clone();
    assert_eq!(phone.whoami().await, "alice fresh=true remembered=false");

    let before = logins.calls();
    phone.get("/protected").await;
    assert_eq!(
        logins.calls(),
        before + 1,
        "one index read per request in this mode"
    );

    assert_eq!(laptop.post("/logins/end-others").await.body, "1");
    assert_eq!(phone.whoami().await, "anonymous");
    let mut stolen_copy = stolen_copy;
    assert_eq!(
        stolen_copy.whoami().await,
        "anonymous",
        "the cookie is dead everywhere"
    );
    assert_eq!(laptop.whoami().await, "alice fresh=true remembered=false");

    // A logout too is server-side now: a copy of the cookie taken before it is dead.
    let copy = laptop.clone();
    laptop.post("/logout").await;
    let mut copy = copy;
    assert_eq!(copy.whoami().await, "anonymous");
}

#[tokio::test]
async fn last_use_rides_along_with_last_seen_and_a_lost_entry_ends_the_login() {
    let logins = Logins::default();
    let app = TestApp::with_store({
        let logins = logins.clone();
        move |m, store| {
            m.idle_timeout(std::time::Duration::from_secs(4))
                .login_index(LoginIndex::new(logins, store.clone()))
        }
    });
    let mut laptop = app.client();
    laptop.login("alice").await;
    let first = logins.entries(1).await[0].last_used_at;

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let calls = logins.calls();
    assert_eq!(laptop.get("/protected").await.status, 200);
    assert_eq!(
        logins.calls(),
        calls + 1,
        "one touch, with the due last_seen"
    );
    assert!(logins.entries(1).await[0].last_used_at > first);
    let calls = logins.calls();
    assert_eq!(laptop.get("/protected").await.status, 200);
    assert_eq!(logins.calls(), calls, "and none until the next one is due");

    // An entry that vanished (a store restored from an old backup, say): the login cannot be
    // listed any more, so its next refresh ends it.
    logins.inner.delete_for_user("1").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(laptop.whoami().await, "anonymous");
}
