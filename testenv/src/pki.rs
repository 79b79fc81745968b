//! Certificates and keys for a throwaway control plane: one CA, the API server's serving
//! certificate, client certificates for each identity, and the service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Everything the control plane and its clients need.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: Pem,
    pub serving: Pem,
    pub admin: Pem,
    pub viewer: Pem,
    pub service_account_key: String,
    pub service_account_public: String,
    issuer_key: String,
    issuer_params: CertificateParams,
}

fn pki_error(err: rcgen::Error) -> Error {
    Error::Pki(err.to_string())
}

impl Pki {
    pub fn generate() -> Result<Self, Error> {
        let ca_key = KeyPair::generate().map_err(pki_error)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error)?;
        ca_params.distinguished_name.push(DnType::CommonName, "oc-ambient-testenv-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(pki_error)?;
        let ca = Pem { cert: ca_cert.pem(), key: ca_key.serialize_pem() };
        let issuer_params = ca_params.clone();

        let issuer = Issuer::new(ca_params, ca_key);
        let serving = leaf(
            &issuer,
            "kube-apiserver",
            &[],
            vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let admin =
            leaf(&issuer, "oc-ambient-admin", &["system:masters"], vec![], ExtendedKeyUsagePurpose::ClientAuth)?;
        let viewer = leaf(&issuer, crate::VIEWER_USER, &[], vec![], ExtendedKeyUsagePurpose::ClientAuth)?;
        let sa_key = KeyPair::generate().map_err(pki_error)?;
        Ok(Pki {
            ca: ca.clone(),
            serving,
            admin,
            viewer,
            service_account_key: sa_key.serialize_pem(),
            service_account_public: sa_key.public_key_pem(),
            issuer_key: ca.key,
            issuer_params,
        })
    }

    /// Issues a serving certificate for a webhook or other loopback server, signed by this CA.
    pub fn issue_serving(&self, common_name: &str, names: Vec<String>) -> Result<Pem, Error> {
        let key = KeyPair::from_pem(&self.issuer_key).map_err(pki_error)?;
        let issuer = Issuer::new(self.issuer_params.clone(), key);
        leaf(&issuer, common_name, &[], names, ExtendedKeyUsagePurpose::ServerAuth)
    }
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    organizations: &[&str],
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<Pem, Error> {
    let key = KeyPair::generate().map_err(pki_error)?;
    let mut params = CertificateParams::new(names).map_err(pki_error)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    for organization in organizations {
        params.distinguished_name.push(DnType::OrganizationName, *organization);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).map_err(pki_error)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}
