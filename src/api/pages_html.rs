//! The HTML of the gateway's pages. Everything interpolated is escaped.

/// Django's `AuthenticationForm.error_messages["invalid_login"]`.
pub const INVALID_LOGIN: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";
/// The contract's refusal of an unverified user (`account.email_verification = "mandatory"`).
pub const UNVERIFIED: &str = "E-mail is not verified.";
pub const UNAVAILABLE: &str = "The service is temporarily unavailable; try again shortly.";
pub const EXPIRED: &str = "This login has expired. Please log in again.";

/// Escapes text for an HTML body or a double-quoted attribute (Django's `escape`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}\
label{display:block;margin-top:1rem}input{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin-top:1.2rem;padding:.5rem 1.2rem}.errornote{color:#a00;border:1px solid #a00;padding:.5rem}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} | portcullis</title><style>{STYLE}</style></head>\n<body><main>\n<h1>{}</h1>\n{body}\n</main></body></html>\n",
        escape(title),
        escape(title)
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value))
}

/// Django's `registration/login.html`, reduced to the form.
pub fn login(csrf_token: &str, next: &str, username: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"errornote\" role=\"alert\">{}</p>\n", escape(e))).unwrap_or_default();
    let form = format!(
        "{error}<form method=\"post\">\n{}\n{}\n\
         <label for=\"id_username\">Username:</label>\
         <input type=\"text\" name=\"username\" id=\"id_username\" autocomplete=\"username\" autofocus required \
         maxlength=\"150\" value=\"{}\">\n\
         <label for=\"id_password\">Password:</label>\
         <input type=\"password\" name=\"password\" id=\"id_password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Log in</button>\n</form>",
        hidden("csrfmiddlewaretoken", csrf_token),
        hidden("next", next),
        escape(username)
    );
    document("Log in", &form)
}

/// The second step of a login for a user with a second factor: the code, with the pending
/// login's ephemeral token carried in a hidden field.
pub fn login_code(csrf_token: &str, next: &str, ephemeral_token: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"errornote\" role=\"alert\">{}</p>\n", escape(e))).unwrap_or_default();
    let form = format!(
        "{error}<p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>\n\
         <form method=\"post\">\n{}\n{}\n{}\n\
         <label for=\"id_code\">Code:</label>\
         <input type=\"text\" name=\"code\" id=\"id_code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" \
         autofocus required maxlength=\"32\">\n\
         <button type=\"submit\">Verify</button>\n</form>",
        hidden("csrfmiddlewaretoken", csrf_token),
        hidden("next", next),
        hidden("ephemeral_token", ephemeral_token)
    );
    document("Two-factor authentication", &form)
}

/// A page with one POST button: logging out by GET would let any page log a user out.
pub fn logout(csrf_token: &str, next: &str) -> String {
    let form = format!(
        "<form method=\"post\">\n{}\n{}\n<button type=\"submit\">Log out</button>\n</form>",
        hidden("csrfmiddlewaretoken", csrf_token),
        hidden("next", next)
    );
    document("Log out", &form)
}

/// Django's `csrf_failure` page, in short.
pub fn csrf_failure(reason: &str) -> String {
    document(
        "Forbidden (403)",
        &format!("<p>CSRF verification failed. Request aborted.</p>\n<p>{}</p>", escape(reason)),
    )
}

pub fn message(title: &str, text: &str) -> String {
    document(title, &format!("<p>{}</p>", escape(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_user_sends_is_escaped() {
        let page = login("tok", "/\"><script>alert(1)</script>", "<b>x</b>", Some("a & b"));
        assert!(!page.contains("<script>") && !page.contains("<b>x</b>"));
        assert!(page.contains("&lt;script&gt;") && page.contains("a &amp; b"));
        assert!(page.contains("name=\"csrfmiddlewaretoken\" value=\"tok\""));
    }
}
