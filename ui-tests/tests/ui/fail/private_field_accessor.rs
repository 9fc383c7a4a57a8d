//! A field's accessors are as visible as the field: from a module the field
//! cannot be reached from, they fail with rustc's own privacy error.

mod site {
    pub mod account {
        use serde::{Deserialize, Serialize};
        use typed_sessions::Session;

        #[derive(Serialize, Deserialize, Default)]
        pub struct Address {
            pub city: String,
        }

        #[derive(Session)]
        pub struct Profile {
            #[session(default)]
            addresses: Vec<Address>,
            pub(super) theme: Option<String>,
            pub visits: Option<u32>,
        }
    }
}

mod elsewhere {
    use typed_sessions::TypedSession;

    use crate::site::account::Profile;

    pub fn reach(profile: &TypedSession<Profile>) {
        let _ = profile.visits(); // a `pub` field's accessor is reachable
        let _ = profile.addresses();
        profile.set_addresses(Vec::new());
        profile.addresses_mut().clear();
        profile.set_theme(None); // `pub(super)` reaches `site` only
    }
}

fn main() {
    let _ = elsewhere::reach;
}
