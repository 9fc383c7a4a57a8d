//! A public struct in a module is usable, with its accessors, outside it;
//! raw identifiers work as field names.

mod data {
    use typed_sessions::Session;

    #[derive(Session)]
    pub struct Account {
        pub r#type: Option<String>,
        #[session(default)]
        pub logins: u32,
    }
}

fn touch(account: &typed_sessions::TypedSession<data::Account>) {
    account.set_type(Some("admin".to_owned()));
    let _: Option<String> = account.r#type();
    *account.logins_mut() += 1;
}

fn main() {
    let _ = touch;
    assert_eq!(<data::Account as typed_sessions::typed::SessionData>::KEYS, ["type", "logins"]);
}
