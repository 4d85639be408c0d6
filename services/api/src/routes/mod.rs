//! Every route, with what it requires. The table is the single source: `configure` registers each route
//! behind the guard for its `Access`, and the tests walk `ROUTES` to check the permission matrix, CSRF
//! and the cross-tenant sweep route by route, so a new route cannot skip them.

mod account;
mod admin;
mod agent;
mod api_v1;
mod audit;
mod billing;
mod dashboard;
mod followups;
pub(crate) mod health;
mod ingest;
mod openapi;
mod pages;
mod webhooks;
pub use webhooks::url_problem as webhook_url_problem;

use actix_web::web;
use onshi_domain::{ApiScope, Permission};
pub use openapi::openapi_document;

use crate::web::guard::Access;

/// One registered route.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

macro_rules! routes {
    ($($method:ident $path:literal $access:expr => $handler:path;)*) => {
        /// Every route of the service with its access rule.
        pub const ROUTES: &[RouteSpec] = &[
            $(RouteSpec { method: stringify!($method), path: $path, access: $access },)*
        ];

        /// The methods a path is served with (upper case), for 405's `Allow`.
        pub(crate) fn allowed_methods(path: &str) -> Vec<&'static str> {
            use std::sync::OnceLock;
            static DEFS: OnceLock<Vec<(actix_web::dev::ResourceDef, &'static str)>> = OnceLock::new();
            let defs = DEFS.get_or_init(|| {
                vec![$((actix_web::dev::ResourceDef::new($path), stringify!($method)),)*]
            });
            let mut methods: Vec<&'static str> = defs
                .iter()
                .filter(|(def, _)| def.is_match(path))
                .map(|(_, m)| match *m { "get" => "GET", "post" => "POST", other => other })
                .collect();
            methods.sort_unstable();
            methods.dedup();
            methods
        }

        pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
            $(
                cfg.route(
                    $path,
                    web::$method().to($handler).wrap(actix_web::middleware::from_fn(
                        |req, next| crate::web::guard::check($access, req, next),
                    )),
                );
            )*
        }
    };
}

use Access::{Device, Open, PartialSession, Perm, Public, Session, Token};
use Permission::{
    FollowUp, ManageAgents, ManageApiTokens, ManageClinics, ManageRetention, ManageStaff, ReopenBilling, ReviewBilling,
    ViewAudit, ViewReceptions,
};

routes! {
    get "/healthz" Open => health::healthz;
    get "/readyz" Open => health::readyz;
    get "/metrics" Open => health::metrics;
    get "/static/app.css" Open => pages::stylesheet;
    get "/static/feed.js" Open => pages::feed_script;
    get "/api/v1/openapi.json" Open => openapi::document;
    get "/developers/api" Public => openapi::reference;

    post "/api/v1/events" Device => ingest::post_events;
    post "/api/v1/claims" Device => ingest::post_claims;
    post "/api/v1/agent/enroll" Device => agent::enroll;
    post "/api/v1/agent/token" Device => agent::token;

    get "/api/v1/clinics" Token(ApiScope::ClinicsRead) => api_v1::clinics;
    get "/api/v1/clinics/{clinic}/receptions" Token(ApiScope::ReceptionsRead) => api_v1::receptions;
    get "/api/v1/clinics/{clinic}/visits" Token(ApiScope::ReceptionsRead) => api_v1::visits;
    get "/api/v1/clinics/{clinic}/usage" Token(ApiScope::UsageRead) => api_v1::usage;
    get "/api/v1/clinics/{clinic}/billing/{month}" Token(ApiScope::BillingRead) => api_v1::billing_month;
    get "/api/v1/fleet" Token(ApiScope::FleetRead) => api_v1::fleet;
    get "/api/v1/alerts" Token(ApiScope::AlertsRead) => api_v1::alerts;
    get "/api/v1/audit" Token(ApiScope::AuditRead) => api_v1::audit;

    get "/signin" Public => account::signin::signin_form;
    post "/signin" Public => account::signin::signin;
    get "/signin/totp" PartialSession => account::signin::totp_form;
    post "/signin/totp" PartialSession => account::signin::totp;
    get "/account/totp/setup" PartialSession => account::signin::totp_setup_form;
    post "/account/totp/setup" PartialSession => account::signin::totp_setup;
    post "/signout" Session => account::signin::signout;
    post "/account/recovery-codes" Session => account::recovery::regenerate;
    get "/signup" Public => account::signup::signup_form;
    post "/signup" Public => account::signup::signup;
    get "/verify-email/{token}" Public => account::signup::verify_email_form;
    post "/verify-email/{token}" Public => account::signup::verify_email;
    get "/password/forgot" Public => account::password_link::forgot_form;
    post "/password/forgot" Public => account::password_link::forgot;
    get "/password/reset/{token}" Public => account::password_link::reset_form;
    post "/password/reset/{token}" Public => account::password_link::reset;
    get "/invite/{token}" Public => account::password_link::invite_form;
    post "/invite/{token}" Public => account::password_link::accept_invite;
    get "/account" Session => account::profile::account_page;
    post "/account/password" Session => account::profile::change_password;
    post "/account/sessions/revoke" Session => account::profile::revoke_own_sessions;

    get "/" Session => pages::home;
    get "/onboarding" Perm(ManageClinics) => admin::onboarding;
    post "/clinics" Perm(ManageClinics) => admin::add_clinic;
    post "/settings/retention" Perm(ManageRetention) => admin::set_retention;
    get "/clinics/{clinic}" Perm(ManageAgents) => admin::clinic_page;
    post "/clinics/{clinic}/start-date" Perm(ManageClinics) => admin::set_start_date;
    post "/clinics/{clinic}/hours" Perm(ManageClinics) => admin::set_hours;
    post "/clinics/{clinic}/terminal" Perm(ManageClinics) => admin::set_terminal;
    post "/clinics/{clinic}/enrollment-codes" Perm(ManageAgents) => admin::new_enrollment_code;
    get "/clinics/{clinic}/agent.toml" Perm(ManageAgents) => admin::agent_config;
    post "/devices/{device}/revoke" Perm(ManageAgents) => admin::revoke_device;
    get "/staff" Perm(ManageStaff) => admin::staff;
    post "/staff/invite" Perm(ManageStaff) => admin::invite;
    post "/staff/{user}/role" Perm(ManageStaff) => admin::set_role;
    post "/staff/{user}/disable" Perm(ManageStaff) => admin::disable;
    post "/staff/{user}/enable" Perm(ManageStaff) => admin::enable;
    post "/staff/{user}/reset-2fa" Perm(ManageStaff) => admin::reset_2fa;
    post "/staff/{user}/sessions/revoke" Perm(ManageStaff) => admin::revoke_sessions;
    get "/settings/api-tokens" Perm(ManageApiTokens) => admin::api_tokens;
    post "/settings/api-tokens" Perm(ManageApiTokens) => admin::create_api_token;
    post "/settings/api-tokens/{token}/revoke" Perm(ManageApiTokens) => admin::revoke_api_token;
    get "/settings/webhooks" Perm(ManageApiTokens) => webhooks::page;
    post "/settings/webhooks" Perm(ManageApiTokens) => webhooks::create;
    post "/settings/webhooks/{endpoint}/rotate" Perm(ManageApiTokens) => webhooks::rotate;
    post "/settings/webhooks/{endpoint}/disable" Perm(ManageApiTokens) => webhooks::disable;
    post "/settings/webhooks/{endpoint}/enable" Perm(ManageApiTokens) => webhooks::enable;
    post "/settings/webhooks/{endpoint}/test" Perm(ManageApiTokens) => webhooks::test;
    post "/settings/webhooks/deliveries/{delivery}/replay" Perm(ManageApiTokens) => webhooks::replay;
    get "/audit" Perm(ViewAudit) => audit::viewer;
    get "/audit.csv" Perm(ViewAudit) => audit::export_csv;
    get "/clinics/{clinic}/receptions" Perm(ViewReceptions) => pages::clinic_receptions;
    get "/clinics/{clinic}/followups" Perm(FollowUp) => followups::page;
    post "/clinics/{clinic}/followups" Perm(FollowUp) => followups::save;
    get "/dashboard" Perm(ViewReceptions) => dashboard::overview::overview;
    get "/dashboard/clinics/{clinic}" Perm(ViewReceptions) => dashboard::clinic::clinic;
    get "/fleet" Perm(ManageAgents) => dashboard::fleet::fleet;
    get "/feed" Perm(ViewReceptions) => dashboard::feed::feed;
    get "/billing" Perm(ReviewBilling) => billing::group;
    post "/billing/official-usage" Perm(ReviewBilling) => billing::import_official;
    get "/billing/{clinic}/{month}" Perm(ReviewBilling) => billing::month_page;
    get "/billing/{clinic}/{month}/differences.csv" Perm(ReviewBilling) => billing::differences;
    post "/billing/{clinic}/{month}/visits/{visit}/review" Perm(ReviewBilling) => billing::review_visit;
    post "/billing/{clinic}/{month}/bulk" Perm(ReviewBilling) => billing::bulk;
    post "/billing/{clinic}/{month}/close" Perm(ReviewBilling) => billing::close_month;
    post "/billing/{clinic}/{month}/reopen" Perm(ReopenBilling) => billing::reopen_month;
    post "/billing/{clinic}/{month}/export" Perm(ReviewBilling) => billing::export;
    get "/billing/{clinic}/{month}/exports/{export}" Perm(ReviewBilling) => billing::download;
    post "/billing/{clinic}/standards" Perm(ReviewBilling) => billing::set_standards;
    post "/billing/{clinic}/usage-rates" Perm(ReviewBilling) => billing::set_usage_rate;
}
