//! Any bytes as a レセ電 file: the reader must not panic; whatever it accepts must be for the enrolled
//! clinic, add up (GO equals the receipts) and pass the cloud's own validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onshi_agent::oqs::ParseContext;
use onshi_domain::MedicalInstitutionCode;

fuzz_target!(|data: &[u8]| {
    let clinic = MedicalInstitutionCode::parse("1311234560").ok();
    let ctx = ParseContext { clinic: clinic.clone(), pseudonym_key: b"fuzz".to_vec() };
    if let Ok(claims) = onshi_agent::uke::parse(data, &ctx) {
        let clinic = clinic.expect("a valid code");
        assert_eq!(claims.institution_code, clinic);
        assert_eq!(claims.receipts.iter().map(|r| r.points).sum::<u64>(), claims.total_points);
        // Whatever the reader accepts, the cloud accepts (dates inside their months, codes well formed),
        // except receipts dated after the claim month, which the cloud refuses by design.
        if claims.receipts.iter().all(|r| r.service_month <= claims.claim_month && r.service_month.year() >= 2021)
            && claims.claim_month.year() >= 2021
        {
            claims.validate(&clinic, "claims").expect("the cloud accepts what the agent accepts");
        }
    }
});
