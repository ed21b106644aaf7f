//! POST /register/: the seed's first command, every error row, and the duplicate race.
use poem::http::StatusCode;
use portcullis::store::user;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::helpers::{STRONG, TestApp};

async fn stored(app: &TestApp, username: &str) -> Option<user::Model> {
    user::Entity::find().filter(user::Column::Username.eq(username)).one(&app.state.db).await.unwrap()
}

#[tokio::test]
async fn the_seeds_weak_password_is_refused_as_django_would() {
    let app = TestApp::new().await;
    let res = app.post_json("/register/", &json!({"username": "john", "password": "password123"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body, json!({"password": ["This password is too common."]}));
    assert!(stored(&app, "john").await.is_none(), "nothing is written on a refusal");
}

#[tokio::test]
async fn a_strong_password_creates_the_user() {
    let app = TestApp::new().await;
    let res = app.post_json("/register/", &json!({"username": "john", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.headers["content-type"], "application/json; charset=utf-8");
    let id = res.body["user"]["id"].as_i64().unwrap();
    assert_eq!(
        res.body,
        json!({"message": "User created successfully", "user": {"id": id, "username": "john", "email": ""}})
    );
    let user = stored(&app, "john").await.unwrap();
    assert_eq!(user.id, id);
    assert!(user.password.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", user.password);
    assert!(!user.password.contains(STRONG));
    assert!(user.is_active && !user.is_staff && !user.is_superuser);
    assert!(user.last_login.is_none());
}

#[tokio::test]
async fn optional_fields_are_stored_and_the_email_domain_normalised() {
    let app = TestApp::new().await;
    let res = app
        .post_json(
            "/register/",
            &json!({"username": "ann", "password": STRONG, "email": "Ann.Lee@Example.COM", "first_name": "Ann", "last_name": "Lee"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["user"]["email"], "Ann.Lee@example.com");
    let user = stored(&app, "ann").await.unwrap();
    assert_eq!((user.first_name.as_str(), user.last_name.as_str()), ("Ann", "Lee"));
}

#[tokio::test]
async fn form_encoded_bodies_are_accepted_and_the_slash_is_optional() {
    let app = TestApp::new().await;
    let body = format!("username=formuser&password={STRONG}");
    let res = app.post_raw("/register", Some("application/x-www-form-urlencoded"), body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["user"]["username"], "formuser");
}

#[tokio::test]
async fn a_taken_username_is_a_field_error_whatever_its_case() {
    let app = TestApp::new().await;
    assert_eq!(app.register("john").await.status, StatusCode::CREATED);
    for name in ["john", "John", "JOHN"] {
        let res = app.register(name).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        assert_eq!(res.body, json!({"username": ["A user with that username already exists."]}));
    }
    let count = user::Entity::find().count(&app.state.db).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn missing_blank_null_and_mistyped_fields_get_drf_messages() {
    let app = TestApp::new().await;
    let cases = [
        (json!({}), json!({"username": ["This field is required."], "password": ["This field is required."]})),
        (
            json!({"username": "", "password": ""}),
            json!({"username": ["This field may not be blank."], "password": ["This field may not be blank."]}),
        ),
        (
            json!({"username": null, "password": null}),
            json!({"username": ["This field may not be null."], "password": ["This field may not be null."]}),
        ),
        (
            json!({"username": true, "password": ["x"]}),
            json!({"username": ["Not a valid string."], "password": ["Not a valid string."]}),
        ),
        (json!({"username": {"a": 1}, "password": STRONG}), json!({"username": ["Not a valid string."]})),
        (json!({"username": "ok", "password": STRONG, "email": 5}), json!({"email": ["Enter a valid email address."]})),
        (
            json!({"username": "ok", "password": STRONG, "email": "not-an-email"}),
            json!({"email": ["Enter a valid email address."]}),
        ),
    ];
    for (body, expected) in cases {
        let res = app.post_json("/register/", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(res.body, expected, "{body}");
    }
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 0);
}

#[tokio::test]
async fn usernames_follow_djangos_rules() {
    let app = TestApp::new().await;
    let invalid = "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.";
    for bad in ["john smith", "john!", "a/b", "<script>"] {
        let res = app.register(bad).await;
        assert_eq!(res.body, json!({"username": [invalid]}), "{bad}");
    }
    let res = app.register(&"a".repeat(151)).await;
    assert_eq!(res.body, json!({"username": ["Ensure this field has no more than 150 characters."]}));
    for good in ["a".repeat(150), "jöhn".into(), "user@example.com".into(), "a.b+c-d_e".into()] {
        assert_eq!(app.register(&good).await.status, StatusCode::CREATED, "{good}");
    }
    // Django normalises to NFKC: full-width letters become ASCII.
    let res = app.register("Ｊｕｎｅ").await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["user"]["username"], "June");
    // A number is a valid CharField value in DRF.
    let res = app.post_json("/register/", &json!({"username": 12345, "password": STRONG})).await;
    assert_eq!(res.body["user"]["username"], "12345");
}

#[tokio::test]
async fn username_rules_apply_after_normalisation_so_nothing_overflows_the_column() {
    let app = TestApp::new().await;
    let too_long = json!({"username": ["Ensure this field has no more than 150 characters."]});
    // U+FB03 is "ffi" under NFKC: 51 of them are 153 characters once stored.
    let res = app.register(&"\u{fb03}".repeat(51)).await;
    assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &too_long));
    let res = app.register(&"\u{fb03}".repeat(50)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(stored(&app, &"ffi".repeat(50)).await.unwrap().username.chars().count(), 150);
    // U+FDFA becomes 18 characters with spaces: refused (on PostgreSQL this was a 500).
    for name in ["\u{fdfa}".repeat(9), "\u{fdfa}".repeat(150)] {
        let res = app.register(&name).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    }
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 1);
}

#[tokio::test]
async fn passwords_go_through_djangos_four_validators() {
    let app = TestApp::new().await;
    let cases = [
        (
            "1234",
            vec![
                "This password is too short. It must contain at least 8 characters.",
                "This password is too common.",
                "This password is entirely numeric.",
            ],
        ),
        ("83725910464", vec!["This password is entirely numeric."]),
        ("short1!", vec!["This password is too short. It must contain at least 8 characters."]),
        ("qwertyuiop", vec!["This password is too common."]),
        ("margaretsmith1", vec!["The password is too similar to the username."]),
    ];
    for (password, messages) in cases {
        let res = app.post_json("/register/", &json!({"username": "margaretsmith", "password": password})).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{password}");
        assert_eq!(res.body, json!({"password": messages}), "{password}");
    }
    let res = app
        .post_json(
            "/register/",
            &json!({"username": "zed", "email": "wilhelmina.k@example.com", "password": "wilhelminak"}),
        )
        .await;
    assert_eq!(res.body, json!({"password": ["The password is too similar to the email address."]}));
    let res = app.post_json("/register/", &json!({"username": "zed", "password": "x".repeat(129)})).await;
    assert_eq!(res.body, json!({"password": ["Ensure this field has no more than 128 characters."]}));
    // Passwords are never trimmed: the spaces are part of it.
    let res = app.post_json("/register/", &json!({"username": "spacey", "password": format!("  {STRONG}  ")})).await;
    assert_eq!(res.status, StatusCode::CREATED);
}

#[tokio::test]
async fn errors_of_several_fields_come_together() {
    let app = TestApp::new().await;
    app.register("taken").await;
    let res = app.post_json("/register/", &json!({"username": "taken", "password": "1234", "email": "x"})).await;
    assert_eq!(
        res.body,
        json!({
            "username": ["A user with that username already exists."],
            "email": ["Enter a valid email address."],
            "password": [
                "This password is too short. It must contain at least 8 characters.",
                "This password is too common.",
                "This password is entirely numeric."
            ]
        })
    );
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_give_one_201_and_no_500() {
    let app = TestApp::new().await;
    let bodies: Vec<_> =
        (0..8).map(|i| json!({"username": if i % 2 == 0 { "racer" } else { "RACER" }, "password": STRONG})).collect();
    let attempts = bodies.iter().map(|body| app.post_json("/register/", body));
    let results = futures_util::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.status == StatusCode::CREATED).count();
    assert_eq!(created, 1);
    for r in results.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body, json!({"username": ["A user with that username already exists."]}));
    }
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 1);
}
