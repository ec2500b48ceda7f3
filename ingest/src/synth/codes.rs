//! Terminology and name tables. Codes are real SNOMED CT, LOINC, RxNorm, CVX and DICOM
//! codes with their published displays, so queries written against real data (e.g.
//! `code = '4548-4'`) work unchanged on synthetic data.

pub const SNOMED: &str = "http://snomed.info/sct";
pub const LOINC: &str = "http://loinc.org";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const DICOM_DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";

/// A coding: system, code, display.
#[derive(Clone, Copy, Debug)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

const fn sct(code: &'static str, display: &'static str) -> Code {
    Code {
        system: SNOMED,
        code,
        display,
    }
}
const fn loinc(code: &'static str, display: &'static str) -> Code {
    Code {
        system: LOINC,
        code,
        display,
    }
}
const fn rx(code: &'static str, display: &'static str) -> Code {
    Code {
        system: RXNORM,
        code,
        display,
    }
}
const fn cvx(code: &'static str, display: &'static str) -> Code {
    Code {
        system: CVX,
        code,
        display,
    }
}

// ---------------------------------------------------------------------------------------
// Observations

/// A quantitative observation: LOINC code, UCUM unit, normal range, printed precision.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    pub code: Code,
    /// UCUM code, also used as the human-readable unit (as most lab systems do).
    pub unit: &'static str,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub decimals: u8,
}

const fn m(code: &'static str, display: &'static str, unit: &'static str, decimals: u8) -> Measure {
    Measure {
        code: loinc(code, display),
        unit,
        low: None,
        high: None,
        decimals,
    }
}
const fn lab(
    code: &'static str,
    display: &'static str,
    unit: &'static str,
    low: Option<f64>,
    high: Option<f64>,
    decimals: u8,
) -> Measure {
    Measure {
        code: loinc(code, display),
        unit,
        low,
        high,
        decimals,
    }
}

pub const HEART_RATE: Measure = m("8867-4", "Heart rate", "/min", 0);
pub const RESP_RATE: Measure = m("9279-1", "Respiratory rate", "/min", 0);
pub const BODY_TEMP: Measure = m("8310-5", "Body temperature", "Cel", 1);
pub const BODY_WEIGHT: Measure = m("29463-7", "Body weight", "kg", 1);
pub const BODY_HEIGHT: Measure = m("8302-2", "Body height", "cm", 1);
pub const BMI: Measure = m("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 1);
pub const HEAD_CIRC: Measure = m("9843-4", "Head Occipital-frontal circumference", "cm", 1);
pub const SPO2: Measure = m(
    "59408-5",
    "Oxygen saturation in Arterial blood by Pulse oximetry",
    "%",
    0,
);
/// The code the FHIR vital-signs profile requires next to 59408-5.
pub const SPO2_PROFILE: Code = loinc("2708-6", "Oxygen saturation in Arterial blood");
pub const BP_PANEL: Code = loinc("85354-9", "Blood pressure panel with all children optional");
pub const SYSTOLIC: Measure = m("8480-6", "Systolic blood pressure", "mm[Hg]", 0);
pub const DIASTOLIC: Measure = m("8462-4", "Diastolic blood pressure", "mm[Hg]", 0);
pub const SMOKING_STATUS: Code = loinc("72166-2", "Tobacco smoking status");
pub const NEVER_SMOKER: Code = sct("266919005", "Never smoked tobacco (finding)");
pub const EX_SMOKER: Code = sct("8517006", "Ex-smoker (finding)");
pub const SMOKER: Code = sct("77176002", "Smoker (finding)");

pub const GLUCOSE: Measure = lab(
    "2339-0",
    "Glucose [Mass/volume] in Blood",
    "mg/dL",
    Some(70.0),
    Some(99.0),
    0,
);
pub const A1C: Measure = lab(
    "4548-4",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
    "%",
    Some(4.0),
    Some(5.6),
    1,
);
pub const BUN: Measure = lab(
    "3094-0",
    "Urea nitrogen [Mass/volume] in Serum or Plasma",
    "mg/dL",
    Some(7.0),
    Some(20.0),
    0,
);
pub const CREATININE_M: Measure = lab(
    "2160-0",
    "Creatinine [Mass/volume] in Serum or Plasma",
    "mg/dL",
    Some(0.74),
    Some(1.35),
    2,
);
pub const CREATININE_F: Measure = Measure {
    low: Some(0.59),
    high: Some(1.04),
    ..CREATININE_M
};
pub const EGFR: Measure = lab(
    "33914-3",
    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)",
    "mL/min/{1.73_m2}",
    Some(60.0),
    None,
    0,
);
pub const SODIUM: Measure = lab(
    "2951-2",
    "Sodium [Moles/volume] in Serum or Plasma",
    "mmol/L",
    Some(135.0),
    Some(145.0),
    0,
);
pub const POTASSIUM: Measure = lab(
    "2823-3",
    "Potassium [Moles/volume] in Serum or Plasma",
    "mmol/L",
    Some(3.5),
    Some(5.1),
    1,
);
pub const CHLORIDE: Measure = lab(
    "2075-0",
    "Chloride [Moles/volume] in Serum or Plasma",
    "mmol/L",
    Some(98.0),
    Some(107.0),
    0,
);
pub const CO2: Measure = lab(
    "2028-9",
    "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
    "mmol/L",
    Some(22.0),
    Some(29.0),
    0,
);
pub const CALCIUM: Measure = lab(
    "17861-6",
    "Calcium [Mass/volume] in Serum or Plasma",
    "mg/dL",
    Some(8.6),
    Some(10.3),
    1,
);
pub const CHOLESTEROL: Measure = lab(
    "2093-3",
    "Cholesterol [Mass/volume] in Serum or Plasma",
    "mg/dL",
    None,
    Some(200.0),
    0,
);
pub const LDL: Measure = lab(
    "18262-6",
    "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
    "mg/dL",
    None,
    Some(100.0),
    0,
);
pub const HDL: Measure = lab(
    "2085-9",
    "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
    "mg/dL",
    Some(40.0),
    None,
    0,
);
pub const TRIGLYCERIDES: Measure = lab(
    "2571-8",
    "Triglyceride [Mass/volume] in Serum or Plasma",
    "mg/dL",
    None,
    Some(150.0),
    0,
);
pub const HEMOGLOBIN_M: Measure = lab(
    "718-7",
    "Hemoglobin [Mass/volume] in Blood",
    "g/dL",
    Some(13.5),
    Some(17.5),
    1,
);
pub const HEMOGLOBIN_F: Measure = Measure {
    low: Some(12.0),
    high: Some(15.5),
    ..HEMOGLOBIN_M
};
/// Infants' range, for the 12-month anemia screen.
pub const HEMOGLOBIN_CHILD: Measure = Measure {
    low: Some(10.5),
    high: Some(13.5),
    ..HEMOGLOBIN_M
};
pub const HEMATOCRIT_M: Measure = lab(
    "4544-3",
    "Hematocrit [Volume Fraction] of Blood by Automated count",
    "%",
    Some(41.0),
    Some(50.0),
    1,
);
pub const HEMATOCRIT_F: Measure = Measure {
    low: Some(36.0),
    high: Some(44.0),
    ..HEMATOCRIT_M
};
pub const WBC: Measure = lab(
    "6690-2",
    "Leukocytes [#/volume] in Blood by Automated count",
    "10*3/uL",
    Some(4.5),
    Some(11.0),
    1,
);
pub const PLATELETS: Measure = lab(
    "777-3",
    "Platelets [#/volume] in Blood by Automated count",
    "10*3/uL",
    Some(150.0),
    Some(450.0),
    0,
);
pub const TSH: Measure = lab(
    "3016-3",
    "Thyrotropin [Units/volume] in Serum or Plasma",
    "m[IU]/L",
    Some(0.4),
    Some(4.0),
    2,
);
pub const INR: Measure = lab(
    "6301-6",
    "INR in Platelet poor plasma by Coagulation assay",
    "{INR}",
    Some(0.8),
    Some(1.2),
    1,
);
pub const BNP: Measure = lab(
    "30934-4",
    "Natriuretic peptide B [Mass/volume] in Serum or Plasma",
    "pg/mL",
    None,
    Some(100.0),
    0,
);
pub const MICROALBUMIN: Measure = lab(
    "14959-1",
    "Microalbumin/Creatinine [Mass Ratio] in Urine",
    "mg/g",
    None,
    Some(30.0),
    1,
);

pub const CBC_PANEL: Code = loinc("58410-2", "CBC panel - Blood by Automated count");
pub const CMP_PANEL: Code = loinc(
    "24323-8",
    "Comprehensive metabolic 2000 panel - Serum or Plasma",
);
pub const LIPID_PANEL: Code = loinc("57698-3", "Lipid panel with direct LDL - Serum or Plasma");

// ---------------------------------------------------------------------------------------
// Encounters

pub const ENC_WELL_CHILD: Code = sct("410620009", "Well child visit (procedure)");
pub const ENC_GENERAL_EXAM: Code = sct("162673000", "General examination of patient (procedure)");
pub const ENC_CHECK_UP: Code = sct("185349003", "Encounter for check up (procedure)");
pub const ENC_FOLLOW_UP: Code = sct("390906007", "Follow-up encounter (procedure)");
pub const ENC_SYMPTOM: Code = sct("185345009", "Encounter for symptom (procedure)");
pub const ENC_EMERGENCY: Code = sct("50849002", "Emergency room admission (procedure)");
pub const ENC_ADMISSION: Code = sct("32485007", "Hospital admission (procedure)");

// ---------------------------------------------------------------------------------------
// Medications

/// A medication with how it is taken.
#[derive(Clone, Copy, Debug)]
pub struct Med {
    pub code: Code,
    pub instruction: &'static str,
    /// Doses per day; 0 for "as needed".
    pub per_day: u8,
    /// UCUM annotation for one dose, e.g. `{tbl}`.
    /// Amount per dose, in `dose_unit`.
    pub dose: f64,
    pub dose_unit: &'static str,
    pub dose_display: &'static str,
}

const fn med(
    code: &'static str,
    display: &'static str,
    instruction: &'static str,
    per_day: u8,
    dose: f64,
    dose_unit: &'static str,
    dose_display: &'static str,
) -> Med {
    Med {
        code: rx(code, display),
        instruction,
        per_day,
        dose,
        dose_unit,
        dose_display,
    }
}
const fn tab(
    code: &'static str,
    display: &'static str,
    instruction: &'static str,
    per_day: u8,
) -> Med {
    med(code, display, instruction, per_day, 1.0, "{tbl}", "tablet")
}
const fn tab2(
    code: &'static str,
    display: &'static str,
    instruction: &'static str,
    per_day: u8,
) -> Med {
    med(code, display, instruction, per_day, 2.0, "{tbl}", "tablet")
}

pub const LISINOPRIL: Med = tab(
    "314076",
    "lisinopril 10 MG Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const AMLODIPINE: Med = tab(
    "197361",
    "amlodipine 5 MG Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const HCTZ: Med = tab(
    "310798",
    "Hydrochlorothiazide 25 MG Oral Tablet",
    "Take 1 tablet by mouth every morning",
    1,
);
pub const METFORMIN: Med = tab(
    "860975",
    "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
    "Take 1 tablet by mouth twice daily with meals",
    2,
);
pub const INSULIN: Med = med(
    "106892",
    "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension [Humulin]",
    "Inject 20 units subcutaneously twice daily before meals",
    2,
    20.0,
    "[iU]",
    "unit",
);
pub const SIMVASTATIN: Med = tab(
    "312961",
    "Simvastatin 20 MG Oral Tablet",
    "Take 1 tablet by mouth at bedtime",
    1,
);
pub const ATORVASTATIN: Med = tab(
    "259255",
    "Atorvastatin 80 MG Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const CLOPIDOGREL: Med = tab(
    "309362",
    "Clopidogrel 75 MG Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const ASPIRIN: Med = tab(
    "243670",
    "aspirin 81 MG Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const NITROGLYCERIN: Med = med(
    "705129",
    "Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
    "1 spray under the tongue as needed for chest pain; may repeat every 5 minutes up to 3 times",
    0,
    1.0,
    "{spray}",
    "spray",
);
pub const ALBUTEROL: Med = med(
    "745679",
    "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
    "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
    0,
    2.0,
    "{puff}",
    "puff",
);
pub const FLUTICASONE: Med = med(
    "895994",
    "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
    "Inhale 2 puffs twice daily",
    2,
    2.0,
    "{puff}",
    "puff",
);
pub const FLUTICASONE_SALMETEROL: Med = med(
    "896209",
    "60 ACTUAT Fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler",
    "Inhale 1 puff twice daily",
    2,
    1.0,
    "{puff}",
    "puff",
);
pub const WARFARIN: Med = tab(
    "855332",
    "Warfarin Sodium 5 MG Oral Tablet",
    "Take 1 tablet by mouth once daily in the evening",
    1,
);
pub const METOPROLOL: Med = tab(
    "866412",
    "24 HR Metoprolol succinate 100 MG Extended Release Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const FUROSEMIDE: Med = tab(
    "313988",
    "Furosemide 40 MG Oral Tablet",
    "Take 1 tablet by mouth every morning",
    1,
);
pub const SERTRALINE: Med = tab(
    "312938",
    "Sertraline 100 MG Oral Tablet",
    "Take 1 tablet by mouth once daily",
    1,
);
pub const LEVOTHYROXINE: Med = tab(
    "966222",
    "Levothyroxine Sodium 0.075 MG Oral Tablet",
    "Take 1 tablet by mouth every morning on an empty stomach",
    1,
);
pub const FERROUS_SULFATE: Med = tab(
    "310325",
    "ferrous sulfate 325 MG Oral Tablet",
    "Take 1 tablet by mouth once daily with food",
    1,
);
pub const NAPROXEN: Med = tab(
    "849574",
    "Naproxen sodium 220 MG Oral Tablet",
    "Take 1 tablet by mouth every 12 hours as needed for pain",
    0,
);
pub const ACETAMINOPHEN: Med = tab2(
    "313782",
    "Acetaminophen 325 MG Oral Tablet",
    "Take 2 tablets by mouth every 6 hours as needed for pain or fever",
    0,
);
pub const IBUPROFEN: Med = tab2(
    "310965",
    "Ibuprofen 200 MG Oral Tablet",
    "Take 2 tablets by mouth every 6 hours as needed for pain",
    0,
);
pub const AMOXICILLIN: Med = med(
    "308182",
    "Amoxicillin 250 MG Oral Capsule",
    "Take 2 capsules by mouth three times daily for 10 days",
    3,
    2.0,
    "{cap}",
    "capsule",
);
pub const AMOX_CLAV: Med = tab(
    "562251",
    "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet",
    "Take 1 tablet by mouth every 8 hours for 10 days",
    3,
);
pub const PENICILLIN_V: Med = tab(
    "834061",
    "Penicillin V Potassium 250 MG Oral Tablet",
    "Take 1 tablet by mouth four times daily for 10 days",
    4,
);
pub const CIPROFLOXACIN: Med = tab(
    "309309",
    "Ciprofloxacin 500 MG Oral Tablet",
    "Take 1 tablet by mouth every 12 hours for 3 days",
    2,
);

// ---------------------------------------------------------------------------------------
// Procedures

pub const PROC_MED_RECONCILIATION: Code = sct("430193006", "Medication Reconciliation (procedure)");
pub const PROC_DEPRESSION_SCREEN: Code = sct("171207006", "Depression screening (procedure)");
pub const PROC_NEEDS_ASSESSMENT: Code = sct(
    "710824005",
    "Assessment of health and social care needs (procedure)",
);
pub const PROC_COLONOSCOPY: Code = sct("73761001", "Colonoscopy (procedure)");
pub const PROC_MAMMOGRAPHY: Code = sct("71651007", "Mammography (procedure)");
pub const PROC_CHEST_XRAY: Code = sct("399208008", "Plain chest X-ray (procedure)");
pub const PROC_RADIOGRAPHY: Code = sct("168537006", "Plain radiography (procedure)");
pub const PROC_CT: Code = sct("77477000", "Computerized axial tomography (procedure)");
pub const PROC_ECHO: Code = sct("40701008", "Echocardiography (procedure)");
pub const PROC_ECG: Code = sct("29303009", "Electrocardiographic procedure (procedure)");
pub const PROC_SPIROMETRY: Code = sct("127783003", "Spirometry (procedure)");
pub const PROC_THROAT_CULTURE: Code = sct("117015009", "Throat culture (procedure)");
pub const PROC_IMMOBILIZATION: Code = sct("274474001", "Bone immobilization (procedure)");
pub const PROC_SUTURE: Code = sct("288086009", "Suture open wound (procedure)");
pub const PROC_DIALYSIS: Code = sct("265764009", "Renal dialysis (procedure)");
pub const PROC_PCI: Code = sct(
    "415070008",
    "Percutaneous coronary intervention (procedure)",
);
pub const PROC_CABG: Code = sct("232717009", "Coronary artery bypass grafting (procedure)");
pub const PROC_APPENDECTOMY: Code = sct("80146002", "Appendectomy (procedure)");
pub const PROC_PACEMAKER: Code = sct("307280005", "Implantation of cardiac pacemaker (procedure)");

// ---------------------------------------------------------------------------------------
// Devices

pub const DEV_GLUCOSE_METER: Code = sct("337414009", "Blood glucose meter (physical object)");
pub const DEV_PACEMAKER: Code = sct("14106009", "Cardiac pacemaker, device (physical object)");
pub const DEV_DIALYSIS: Code = sct("36965003", "Hemodialysis machine, device (physical object)");
pub const DEV_CPAP: Code = sct(
    "702172008",
    "Home continuous positive airway pressure unit (physical object)",
);
pub const DEV_CANE: Code = sct("87405001", "Cane, device (physical object)");
pub const DEV_HEARING_AID: Code = sct("6012004", "Hearing aid, device (physical object)");

// ---------------------------------------------------------------------------------------
// Imaging

#[derive(Clone, Copy, Debug)]
pub struct Modality {
    pub code: &'static str,
    pub display: &'static str,
    /// DICOM SOP class UID of its images.
    pub sop_class: &'static str,
    pub sop_display: &'static str,
}

pub const MOD_DX: Modality = Modality {
    code: "DX",
    display: "Digital Radiography",
    sop_class: "1.2.840.10008.5.1.4.1.1.1.1",
    sop_display: "Digital X-Ray Image Storage - For Presentation",
};
pub const MOD_CT: Modality = Modality {
    code: "CT",
    display: "Computed Tomography",
    sop_class: "1.2.840.10008.5.1.4.1.1.2",
    sop_display: "CT Image Storage",
};
pub const MOD_US: Modality = Modality {
    code: "US",
    display: "Ultrasound",
    sop_class: "1.2.840.10008.5.1.4.1.1.6.1",
    sop_display: "Ultrasound Image Storage",
};
pub const MOD_MG: Modality = Modality {
    code: "MG",
    display: "Mammography",
    sop_class: "1.2.840.10008.5.1.4.1.1.1.2",
    sop_display: "Digital Mammography X-Ray Image Storage - For Presentation",
};

pub const BODY_CHEST: Code = sct("51185008", "Thoracic structure (body structure)");
pub const BODY_ANKLE: Code = sct("344001", "Ankle region structure (body structure)");
pub const BODY_FOREARM: Code = sct("14975008", "Forearm structure (body structure)");
pub const BODY_BREAST: Code = sct("76752008", "Breast structure (body structure)");
pub const BODY_HEAD: Code = sct("69536005", "Head structure (body structure)");
pub const BODY_ABDOMEN: Code = sct("818981001", "Abdomen (body structure)");
pub const BODY_HEART: Code = sct("80891009", "Heart structure (body structure)");
pub const BODY_KNEE: Code = sct("72696002", "Knee region structure (body structure)");

pub const REPORT_CHEST_XR: Code = loinc("36643-5", "XR Chest 2 Views");
pub const REPORT_MAMMOGRAPHY: Code = loinc("24606-6", "MG Breast Screening");
pub const REPORT_CT_HEAD: Code = loinc("24725-4", "CT Head");
pub const REPORT_ECHO: Code = loinc("34552-0", "Cardiac 2D echo panel");

// ---------------------------------------------------------------------------------------
// Immunizations

pub const VAX_HEPB: Code = cvx("08", "Hep B, adolescent or pediatric");
pub const VAX_DTAP: Code = cvx("20", "DTaP");
pub const VAX_IPV: Code = cvx("10", "IPV");
pub const VAX_HIB: Code = cvx("49", "Hib (PRP-OMP)");
pub const VAX_PCV13: Code = cvx("133", "Pneumococcal conjugate PCV 13");
pub const VAX_ROTAVIRUS: Code = cvx("119", "rotavirus, monovalent");
pub const VAX_MMR: Code = cvx("03", "MMR");
pub const VAX_VARICELLA: Code = cvx("21", "varicella");
pub const VAX_HEPA: Code = cvx("83", "Hep A, ped/adol, 2 dose");
pub const VAX_TDAP: Code = cvx("115", "Tdap");
pub const VAX_HPV: Code = cvx("62", "HPV, quadrivalent");
pub const VAX_MENINGOCOCCAL: Code = cvx("114", "meningococcal MCV4P");
pub const VAX_TD: Code = cvx("113", "Td (adult) preservative free");
pub const VAX_ZOSTER: Code = cvx("187", "zoster vaccine recombinant");
pub const VAX_PPSV23: Code = cvx("33", "pneumococcal polysaccharide vaccine, 23 valent");
pub const VAX_FLU: Code = cvx("140", "Influenza, seasonal, injectable, preservative free");
pub const VAX_COVID_PFIZER: Code = cvx(
    "208",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
);
pub const VAX_COVID_MODERNA: Code = cvx(
    "207",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 100 mcg/0.5mL dose",
);

/// The childhood schedule: age in days at the visit it is given, vaccine.
pub const CHILD_SCHEDULE: &[(i64, Code)] = &[
    (0, VAX_HEPB),
    (61, VAX_DTAP),
    (61, VAX_IPV),
    (61, VAX_HIB),
    (61, VAX_PCV13),
    (61, VAX_ROTAVIRUS),
    (61, VAX_HEPB),
    (122, VAX_DTAP),
    (122, VAX_IPV),
    (122, VAX_HIB),
    (122, VAX_PCV13),
    (122, VAX_ROTAVIRUS),
    (183, VAX_DTAP),
    (183, VAX_PCV13),
    (183, VAX_HEPB),
    (365, VAX_MMR),
    (365, VAX_VARICELLA),
    (365, VAX_HEPA),
    (365, VAX_HIB),
    (365, VAX_PCV13),
    (456, VAX_DTAP),
    (548, VAX_HEPA),
    (1461, VAX_DTAP),
    (1461, VAX_IPV),
    (1461, VAX_MMR),
    (1461, VAX_VARICELLA),
    (4018, VAX_TDAP),
    (4018, VAX_HPV),
    (4018, VAX_MENINGOCOCCAL),
    (4383, VAX_HPV),
    (5844, VAX_MENINGOCOCCAL),
];

/// Well-child visits, as age in days: newborn, 1, 2, 4, 6, 9, 12, 15, 18, 24, 30 months,
/// then yearly from 3 to 17.
pub const WELL_CHILD_DAYS: &[i64] = &[
    4, 30, 61, 122, 183, 274, 365, 456, 548, 730, 913, 1096, 1461, 1826, 2191, 2557, 2922, 3287,
    3652, 4018, 4383, 4748, 5114, 5479, 5844, 6209,
];

// ---------------------------------------------------------------------------------------
// Acute problems

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acute {
    ViralSinusitis,
    BacterialSinusitis,
    Pharyngitis,
    StrepThroat,
    Bronchitis,
    OtitisMedia,
    AnkleSprain,
    ForearmFracture,
    Laceration,
    Uti,
    Concussion,
    AbdominalPain,
    Headache,
    Covid,
    Pneumonia,
}

pub struct AcuteDef {
    pub kind: Acute,
    pub code: Code,
    /// Days until resolved.
    pub days: (i64, i64),
    /// Chance of being seen in the emergency department rather than a clinic.
    pub emergency: f64,
    /// Relative frequency for children, adults.
    pub weight_child: f64,
    pub weight_adult: f64,
    /// Causes fever.
    pub fever: bool,
}

pub const ACUTE: &[AcuteDef] = &[
    AcuteDef {
        kind: Acute::ViralSinusitis,
        code: sct("444814009", "Viral sinusitis (disorder)"),
        days: (7, 21),
        emergency: 0.02,
        weight_child: 10.0,
        weight_adult: 20.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::BacterialSinusitis,
        code: sct("75498004", "Acute bacterial sinusitis (disorder)"),
        days: (10, 28),
        emergency: 0.02,
        weight_child: 3.0,
        weight_adult: 6.0,
        fever: true,
    },
    AcuteDef {
        kind: Acute::Pharyngitis,
        code: sct("195662009", "Acute viral pharyngitis (disorder)"),
        days: (5, 12),
        emergency: 0.03,
        weight_child: 20.0,
        weight_adult: 12.0,
        fever: true,
    },
    AcuteDef {
        kind: Acute::StrepThroat,
        code: sct("43878008", "Streptococcal sore throat (disorder)"),
        days: (7, 14),
        emergency: 0.03,
        weight_child: 10.0,
        weight_adult: 4.0,
        fever: true,
    },
    AcuteDef {
        kind: Acute::Bronchitis,
        code: sct("10509002", "Acute bronchitis (disorder)"),
        days: (10, 28),
        emergency: 0.05,
        weight_child: 8.0,
        weight_adult: 12.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::OtitisMedia,
        code: sct("65363002", "Otitis media (disorder)"),
        days: (7, 14),
        emergency: 0.03,
        weight_child: 25.0,
        weight_adult: 1.0,
        fever: true,
    },
    AcuteDef {
        kind: Acute::AnkleSprain,
        code: sct("44465007", "Sprain of ankle (disorder)"),
        days: (14, 42),
        emergency: 0.35,
        weight_child: 5.0,
        weight_adult: 8.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::ForearmFracture,
        code: sct("65966004", "Fracture of forearm (disorder)"),
        days: (42, 84),
        emergency: 0.65,
        weight_child: 5.0,
        weight_adult: 3.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::Laceration,
        code: sct("283371005", "Laceration of forearm (disorder)"),
        days: (7, 21),
        emergency: 0.45,
        weight_child: 6.0,
        weight_adult: 5.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::Uti,
        code: sct("68566005", "Urinary tract infectious disease (disorder)"),
        days: (5, 14),
        emergency: 0.05,
        weight_child: 2.0,
        weight_adult: 8.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::Concussion,
        code: sct("110030002", "Concussion injury of brain (disorder)"),
        days: (14, 42),
        emergency: 0.8,
        weight_child: 3.0,
        weight_adult: 2.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::AbdominalPain,
        code: sct("21522001", "Abdominal pain (finding)"),
        days: (1, 7),
        emergency: 0.5,
        weight_child: 3.0,
        weight_adult: 6.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::Headache,
        code: sct("25064002", "Headache (finding)"),
        days: (1, 5),
        emergency: 0.15,
        weight_child: 2.0,
        weight_adult: 5.0,
        fever: false,
    },
    AcuteDef {
        kind: Acute::Covid,
        code: sct(
            "840539006",
            "Disease caused by severe acute respiratory syndrome coronavirus 2 (disorder)",
        ),
        days: (10, 28),
        emergency: 0.08,
        weight_child: 5.0,
        weight_adult: 8.0,
        fever: true,
    },
    AcuteDef {
        kind: Acute::Pneumonia,
        code: sct("233604007", "Pneumonia (disorder)"),
        days: (14, 35),
        emergency: 0.5,
        weight_child: 1.0,
        weight_adult: 3.0,
        fever: true,
    },
];

pub const APPENDICITIS: Code = sct("74400008", "Appendicitis (disorder)");
pub const MYOCARDIAL_INFARCTION: Code = sct("22298006", "Myocardial infarction (disorder)");
pub const COPD_EXACERBATION: Code = sct(
    "195951007",
    "Acute exacerbation of chronic obstructive airways disease (disorder)",
);

// ---------------------------------------------------------------------------------------
// Chronic conditions

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Chronic {
    Obesity,
    Prediabetes,
    Diabetes,
    Hypertension,
    Hyperlipidemia,
    Asthma,
    Copd,
    Ckd,
    Esrd,
    CoronaryDisease,
    AtrialFibrillation,
    HeartFailure,
    Depression,
    Hypothyroidism,
    Osteoarthritis,
    Anemia,
    SleepApnea,
}

pub const CHRONIC_COUNT: usize = 17;

pub struct ChronicDef {
    pub code: Code,
    /// Follow-up visits per year it causes on its own.
    pub visits_per_year: f64,
    /// Raises the chance of hospital admission.
    pub serious: bool,
}

pub const CHRONIC: [ChronicDef; CHRONIC_COUNT] = [
    ChronicDef {
        code: sct("162864005", "Body mass index 30+ - obesity (finding)"),
        visits_per_year: 0.0,
        serious: false,
    },
    ChronicDef {
        code: sct("15777000", "Prediabetes (finding)"),
        visits_per_year: 0.3,
        serious: false,
    },
    ChronicDef {
        code: sct("44054006", "Diabetes mellitus type 2 (disorder)"),
        visits_per_year: 2.0,
        serious: true,
    },
    ChronicDef {
        code: sct("59621000", "Essential hypertension (disorder)"),
        visits_per_year: 1.0,
        serious: false,
    },
    ChronicDef {
        code: sct("55822004", "Hyperlipidemia (disorder)"),
        visits_per_year: 0.5,
        serious: false,
    },
    ChronicDef {
        code: sct("195967001", "Asthma (disorder)"),
        visits_per_year: 0.7,
        serious: false,
    },
    ChronicDef {
        code: sct("13645005", "Chronic obstructive lung disease (disorder)"),
        visits_per_year: 1.5,
        serious: true,
    },
    ChronicDef {
        code: sct("433144002", "Chronic kidney disease stage 3 (disorder)"),
        visits_per_year: 1.5,
        serious: true,
    },
    ChronicDef {
        code: sct("46177005", "End-stage renal disease (disorder)"),
        visits_per_year: 3.0,
        serious: true,
    },
    ChronicDef {
        code: sct("53741008", "Coronary arteriosclerosis (disorder)"),
        visits_per_year: 1.5,
        serious: true,
    },
    ChronicDef {
        code: sct("49436004", "Atrial fibrillation (disorder)"),
        visits_per_year: 1.5,
        serious: true,
    },
    ChronicDef {
        code: sct("88805009", "Chronic congestive heart failure (disorder)"),
        visits_per_year: 2.0,
        serious: true,
    },
    ChronicDef {
        code: sct("35489007", "Depressive disorder (disorder)"),
        visits_per_year: 1.0,
        serious: false,
    },
    ChronicDef {
        code: sct("40930008", "Hypothyroidism (disorder)"),
        visits_per_year: 0.5,
        serious: false,
    },
    ChronicDef {
        code: sct("239873007", "Osteoarthritis of knee (disorder)"),
        visits_per_year: 0.4,
        serious: false,
    },
    ChronicDef {
        code: sct("271737000", "Anemia (disorder)"),
        visits_per_year: 0.4,
        serious: false,
    },
    ChronicDef {
        code: sct("78275009", "Obstructive sleep apnea syndrome (disorder)"),
        visits_per_year: 0.3,
        serious: false,
    },
];

// ---------------------------------------------------------------------------------------
// People and places

pub const MALE_GIVEN: &[&str] = &[
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Timothy",
    "Ronald",
    "Edward",
    "Jason",
    "Jeffrey",
    "Ryan",
    "Jacob",
    "Gary",
    "Nicholas",
    "Eric",
    "Jonathan",
    "Stephen",
    "Larry",
    "Justin",
    "Scott",
    "Brandon",
    "Benjamin",
    "Samuel",
    "Gregory",
    "Alexander",
    "Patrick",
    "Frank",
    "Raymond",
    "Jack",
    "Dennis",
    "Jerry",
    "Tyler",
    "Aaron",
    "Jose",
    "Adam",
    "Nathan",
    "Henry",
    "Zachary",
    "Douglas",
    "Peter",
    "Kyle",
    "Noah",
    "Ethan",
    "Jeremy",
    "Walter",
    "Christian",
    "Keith",
    "Roger",
    "Terry",
    "Austin",
    "Sean",
    "Gerald",
    "Carl",
    "Harold",
    "Dylan",
    "Arthur",
    "Lawrence",
    "Jordan",
    "Jesse",
    "Bryan",
    "Billy",
    "Bruce",
    "Gabriel",
    "Joe",
    "Logan",
    "Alan",
    "Juan",
    "Albert",
    "Willie",
    "Elijah",
    "Wayne",
    "Randy",
    "Vincent",
    "Mason",
    "Roy",
    "Ralph",
    "Bobby",
    "Russell",
    "Bradley",
    "Philip",
    "Eugene",
    "Liam",
    "Lucas",
    "Mateo",
    "Carlos",
    "Luis",
    "Miguel",
    "Wei",
    "Hiroshi",
    "Raj",
    "Omar",
    "Malik",
    "Andre",
];

pub const FEMALE_GIVEN: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Sandra",
    "Margaret",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Dorothy",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Amy",
    "Kathleen",
    "Angela",
    "Shirley",
    "Brenda",
    "Emma",
    "Anna",
    "Pamela",
    "Nicole",
    "Samantha",
    "Katherine",
    "Christine",
    "Helen",
    "Debra",
    "Rachel",
    "Carolyn",
    "Janet",
    "Maria",
    "Catherine",
    "Heather",
    "Diane",
    "Olivia",
    "Julie",
    "Joyce",
    "Victoria",
    "Ruth",
    "Virginia",
    "Lauren",
    "Kelly",
    "Christina",
    "Joan",
    "Evelyn",
    "Judith",
    "Andrea",
    "Hannah",
    "Megan",
    "Cheryl",
    "Jacqueline",
    "Martha",
    "Madison",
    "Teresa",
    "Gloria",
    "Sara",
    "Janice",
    "Ann",
    "Kathryn",
    "Abigail",
    "Sophia",
    "Frances",
    "Jean",
    "Alice",
    "Judy",
    "Isabella",
    "Julia",
    "Grace",
    "Amber",
    "Denise",
    "Danielle",
    "Marilyn",
    "Beverly",
    "Charlotte",
    "Natalie",
    "Theresa",
    "Diana",
    "Brittany",
    "Doris",
    "Kayla",
    "Alexis",
    "Lori",
    "Marie",
    "Ava",
    "Mia",
    "Camila",
    "Sofia",
    "Lucia",
    "Mei",
    "Yuki",
    "Priya",
    "Aisha",
    "Keisha",
];

pub const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Hill",
    "Green",
    "Adams",
    "Baker",
    "Nelson",
    "Carter",
    "Mitchell",
    "Roberts",
    "Turner",
    "Phillips",
    "Campbell",
    "Parker",
    "Evans",
    "Edwards",
    "Collins",
    "Stewart",
    "Morris",
    "Murphy",
    "Cook",
    "Rogers",
    "Morgan",
    "Peterson",
    "Cooper",
    "Reed",
    "Bailey",
    "Bell",
    "Kelly",
    "Howard",
    "Ward",
    "Cox",
    "Richardson",
    "Wood",
    "Watson",
    "Brooks",
    "Bennett",
    "Gray",
    "James",
    "Hughes",
    "Price",
    "Sanders",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Powell",
    "Jenkins",
    "Perry",
    "Russell",
    "Sullivan",
    "Fisher",
    "Henderson",
    "Coleman",
    "Simmons",
    "Patterson",
    "Jordan",
    "Reynolds",
    "Hamilton",
    "Graham",
    "Wallace",
    "Cole",
    "West",
    "O'Brien",
    "Nguyen",
    "Chen",
    "Wang",
    "Kim",
    "Patel",
    "Singh",
    "Tanaka",
    "Cohen",
    "Schmidt",
    "Kowalski",
    "Rossi",
    "Olsen",
    "Murray",
    "Ford",
    "Hayes",
    "Stone",
    "Webb",
    "Kennedy",
    "Wells",
    "Shaw",
    "Hunt",
    "Black",
    "Daniels",
];

pub const HISPANIC_FAMILY: &[&str] = &[
    "Garcia",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Perez",
    "Sanchez",
    "Ramirez",
    "Torres",
    "Flores",
    "Rivera",
    "Gomez",
    "Diaz",
    "Cruz",
    "Morales",
    "Reyes",
    "Gutierrez",
    "Ortiz",
    "Ramos",
    "Chavez",
    "Castillo",
    "Vasquez",
    "Jimenez",
    "Mendoza",
    "Ruiz",
    "Alvarez",
    "Romero",
    "Herrera",
    "Medina",
    "Aguilar",
    "Vargas",
    "Castro",
    "Fernandez",
    "Guzman",
    "Soto",
    "Delgado",
    "Rojas",
    "Navarro",
    "Dominguez",
];

pub const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Walnut",
    "Sunset",
    "Lincoln",
    "Jackson",
    "Church",
    "River",
    "Highland",
    "Spring",
    "Chestnut",
    "Franklin",
    "Willow",
    "Meadow",
    "Forest",
    "Center",
    "Madison",
    "Jefferson",
    "Adams",
    "Ridge",
    "Cherry",
    "Birch",
    "Mill",
    "Union",
    "Prospect",
    "Summit",
    "Valley",
    "Broad",
    "Market",
    "Harbor",
    "Orchard",
    "Grove",
];

pub const STREET_SUFFIX: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Way",
    "Boulevard",
    "Place",
    "Terrace",
];

pub struct City {
    pub name: &'static str,
    pub state: &'static str,
    /// First three digits of its ZIP codes.
    pub zip3: u16,
    pub lat: f64,
    pub lon: f64,
}

const fn city(name: &'static str, state: &'static str, zip3: u16, lat: f64, lon: f64) -> City {
    City {
        name,
        state,
        zip3,
        lat,
        lon,
    }
}

pub const CITIES: &[City] = &[
    city("Boston", "MA", 21, 42.3601, -71.0589),
    city("Worcester", "MA", 16, 42.2626, -71.8023),
    city("Springfield", "MA", 11, 42.1015, -72.5898),
    city("Providence", "RI", 29, 41.824, -71.4128),
    city("Hartford", "CT", 61, 41.7658, -72.6734),
    city("Albany", "NY", 122, 42.6526, -73.7562),
    city("Buffalo", "NY", 142, 42.8864, -78.8784),
    city("Philadelphia", "PA", 191, 39.9526, -75.1652),
    city("Pittsburgh", "PA", 152, 40.4406, -79.9959),
    city("Baltimore", "MD", 212, 39.2904, -76.6122),
    city("Richmond", "VA", 232, 37.5407, -77.436),
    city("Raleigh", "NC", 276, 35.7796, -78.6382),
    city("Charlotte", "NC", 282, 35.2271, -80.8431),
    city("Atlanta", "GA", 303, 33.749, -84.388),
    city("Jacksonville", "FL", 322, 30.3322, -81.6557),
    city("Tampa", "FL", 336, 27.9506, -82.4572),
    city("Nashville", "TN", 372, 36.1627, -86.7816),
    city("Columbus", "OH", 432, 39.9612, -82.9988),
    city("Cleveland", "OH", 441, 41.4993, -81.6944),
    city("Indianapolis", "IN", 462, 39.7684, -86.1581),
    city("Detroit", "MI", 482, 42.3314, -83.0458),
    city("Chicago", "IL", 606, 41.8781, -87.6298),
    city("Milwaukee", "WI", 532, 43.0389, -87.9065),
    city("Minneapolis", "MN", 554, 44.9778, -93.265),
    city("St. Louis", "MO", 631, 38.627, -90.1994),
    city("Kansas City", "MO", 641, 39.0997, -94.5786),
    city("Omaha", "NE", 681, 41.2565, -95.9345),
    city("Dallas", "TX", 752, 32.7767, -96.797),
    city("Houston", "TX", 770, 29.7604, -95.3698),
    city("San Antonio", "TX", 782, 29.4241, -98.4936),
    city("Austin", "TX", 787, 30.2672, -97.7431),
    city("Oklahoma City", "OK", 731, 35.4676, -97.5164),
    city("Denver", "CO", 802, 39.7392, -104.9903),
    city("Albuquerque", "NM", 871, 35.0844, -106.6504),
    city("Phoenix", "AZ", 850, 33.4484, -112.074),
    city("Salt Lake City", "UT", 841, 40.7608, -111.891),
    city("Las Vegas", "NV", 891, 36.1699, -115.1398),
    city("San Diego", "CA", 921, 32.7157, -117.1611),
    city("Sacramento", "CA", 958, 38.5816, -121.4944),
    city("Portland", "OR", 972, 45.5152, -122.6784),
    city("Seattle", "WA", 981, 47.6062, -122.3321),
    city("Boise", "ID", 837, 43.615, -116.2023),
];

pub const CLINIC_SUFFIX: &[&str] = &[
    "Family Medicine",
    "Primary Care Associates",
    "Community Health Center",
    "Medical Group",
    "Internal Medicine",
    "Health Partners",
    "Pediatrics and Family Care",
];

pub const HOSPITAL_SUFFIX: &[&str] = &[
    "General Hospital",
    "Medical Center",
    "Regional Medical Center",
    "Memorial Hospital",
    "University Hospital",
];

pub const HOSPITAL_PREFIX: &[&str] = &[
    "St. Mary's",
    "Mercy",
    "Good Samaritan",
    "Riverside",
    "Providence",
    "Sacred Heart",
    "Lakeside",
    "Valley",
];

/// US Core race (OMB categories): code, display, share of the population.
pub const RACES: &[(&str, &str, f64)] = &[
    ("2106-3", "White", 0.72),
    ("2054-5", "Black or African American", 0.13),
    ("2028-9", "Asian", 0.06),
    ("1002-5", "American Indian or Alaska Native", 0.01),
    ("2076-8", "Native Hawaiian or Other Pacific Islander", 0.005),
    ("2131-1", "Other Race", 0.075),
];

pub const MANUFACTURERS: &[&str] = &[
    "Medtronic",
    "Abbott",
    "Roche Diagnostics",
    "ResMed",
    "Philips Respironics",
    "Boston Scientific",
    "Fresenius",
];
