#!/usr/bin/env python3
"""Self-test of the test IdP: starts idp.py and drives it with a pysaml2 *service provider*.

Run:  tests/saml-idp/.venv/bin/python tests/saml-idp/selftest.py
Exits 0 when every check passes.  No network beyond loopback; the SP's endpoints are never
served: this script plays the browser and intercepts what the IdP sends to them.

The pysaml2 SP publishes metadata shaped like Latchkey's (AuthnRequestsSigned="true", a signing
and an encryption KeyDescriptor, emailAddress/persistent NameID formats, ACS HTTP-POST, SLO
Redirect + POST), so what passes here is what Latchkey will be offered.
"""

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import warnings
import zlib
from html.parser import HTMLParser

warnings.filterwarnings("ignore")
# The negative checks make pysaml2 log failed verifications; they are expected.
logging.getLogger("saml2").setLevel(logging.CRITICAL)

import requests  # noqa: E402  (a pysaml2 dependency, in the venv)
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml  # noqa: E402
from saml2.client import Saml2Client  # noqa: E402
from saml2.config import SPConfig  # noqa: E402
from saml2.metadata import create_metadata_string  # noqa: E402
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import idp as idpmod  # noqa: E402

SP_BASE = "http://127.0.0.1:65001/saml/conn_selftest"  # never contacted: the script intercepts
ACS = SP_BASE + "/acs"
SLO = SP_BASE + "/slo"
EMAIL = "ada@corp.example"
PASSWORD = "correct horse battery"

failures = []


def check(name, cond, detail=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else f": {detail}"), flush=True)
    if not cond:
        failures.append(name)


class Forms(HTMLParser):
    """The forms of a page: [{"action", "fields": {name: value}}]."""

    def __init__(self, text):
        super().__init__()
        self.forms = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def start_idp(tmp):
    conf = {
        "users": {
            "ada": {
                "password": PASSWORD,
                "attributes": {
                    "email": EMAIL,
                    "givenName": "Ada",
                    "sn": "Lovelace",
                    "displayName": "Ada Lovelace",
                    "groups": ["engineering", "admins"],
                },
            }
        }
    }
    path = os.path.join(tmp, "idp.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "idp.py"), "--config", path],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line.startswith("READY "), f"IdP did not start: {line!r}"
    return proc, line.split(" ", 1)[1]


def sp_client(tmp, idp_metadata_xml, name="sp"):
    sign_key, sign_cert = idpmod.make_keypair(tmp, f"{name}-sign", "SP signing")
    enc_key, enc_cert = idpmod.make_keypair(tmp, f"{name}-enc", "SP encryption")
    conf = {
        "entityid": SP_BASE,
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "key_file": sign_key,
        "cert_file": sign_cert,
        "encryption_keypairs": [{"key_file": enc_key, "cert_file": enc_cert}],
        "accepted_time_diff": 60,
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "service": {
            "sp": {
                "endpoints": {
                    "assertion_consumer_service": [(ACS, BINDING_HTTP_POST)],
                    "single_logout_service": [(SLO, BINDING_HTTP_REDIRECT), (SLO, BINDING_HTTP_POST)],
                },
                "authn_requests_signed": True,
                "logout_requests_signed": True,
                "want_response_signed": False,
                "want_assertions_signed": False,
                "want_assertions_or_response_signed": True,
                "allow_unsolicited": True,
                "name_id_format": [
                    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
                ],
            }
        },
        "metadata": {"inline": [idp_metadata_xml]},
    }
    cfg = SPConfig()
    cfg.load(conf)
    return Saml2Client(config=cfg), cfg


def sp_metadata(cfg):
    xml = create_metadata_string(None, config=cfg, valid=24)
    return xml.decode() if isinstance(xml, bytes) else xml


class Browser:
    def __init__(self):
        self.s = requests.Session()

    def get(self, url):
        return self.s.get(url, allow_redirects=False)

    def post(self, url, data):
        return self.s.post(url, data=data, allow_redirects=False)


def sign_in(browser, client, idp_entity, binding=BINDING_HTTP_REDIRECT, relay_state="/after", password=PASSWORD):
    """SP-initiated: AuthnRequest -> login form -> form posting the Response to the ACS."""
    reqid, info = client.prepare_for_authenticate(
        entityid=idp_entity, relay_state=relay_state, binding=binding, sigalg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    if binding == BINDING_HTTP_REDIRECT:
        location = dict(info["headers"])["Location"]
        r = browser.get(location)
    else:
        form = Forms(info["data"]).forms[0]
        r = browser.post(form["action"], form["fields"])
    assert r.status_code == 200, (r.status_code, r.text[:500])
    login = Forms(r.text).forms[0]
    assert set(login["fields"]) >= {"username", "password"}, login
    data = dict(login["fields"], username="ada", password=password)
    r = browser.post(urllib.parse.urljoin(r.url, login["action"]), data)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return reqid, r.text


def acs_post(page_text):
    forms = Forms(page_text).forms
    assert forms and forms[0]["action"] == ACS, page_text[:500]
    return forms[0]["fields"]


def consume(client, fields, reqid):
    outstanding = {reqid: "/after"} if reqid else {}
    return client.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, outstanding=outstanding)


def control(idp_url, path, body=None):
    if body is None:
        r = requests.get(idp_url + path)
    else:
        r = requests.post(idp_url + path, json=body)
    r.raise_for_status()
    return r.json()


def response_xml(fields):
    return base64.b64decode(fields["SAMLResponse"]).decode()


def signature_parents(xml):
    """Local names of elements that directly carry a ds:Signature."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    out = []
    for el in root.iter():
        for child in el:
            if child.tag == "{http://www.w3.org/2000/09/xmldsig#}Signature":
                out.append(el.tag.split("}")[1])
    return out


def redirect_parts(location):
    """(raw query pairs, decoded params) of a Redirect-binding URL."""
    query = urllib.parse.urlsplit(location).query
    return idpmod.parse_raw_query(query), {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}


def verify_redirect(location, cert_bodies):
    raw = dict(redirect_parts(location)[0])
    param = "SAMLRequest" if "SAMLRequest" in raw else "SAMLResponse"
    signed = f"{param}={raw[param]}"
    if "RelayState" in raw:
        signed += f"&RelayState={raw['RelayState']}"
    signed += f"&SigAlg={raw['SigAlg']}"
    sig = base64.b64decode(urllib.parse.unquote_plus(raw["Signature"]))
    return idpmod.verify_bytes(cert_bodies, urllib.parse.unquote_plus(raw["SigAlg"]), signed.encode(), sig)


def inflate_param(value):
    return zlib.decompress(base64.b64decode(value), -15).decode()


def main():
    tmp = tempfile.mkdtemp(prefix="idp-selftest.")
    proc, idp_url = start_idp(tmp)
    try:
        run(tmp, idp_url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all checks passed")


def run(tmp, idp_url):
    md = requests.get(idp_url + "/idp/metadata").text
    idp_entity = idp_url + "/idp"
    check("metadata names the entity", f'entityID="{idp_entity}"' in md, md[:300])
    check("metadata has one signing cert", md.count('use="signing"') == 1, md)
    check("metadata has SSO Redirect+POST and SLO", md.count("SingleSignOnService") == 2 and "SingleLogoutService" in md)

    client, cfg = sp_client(tmp, md)
    summary = control(idp_url, "/control/sp", {"xml": sp_metadata(cfg)})
    check("SP metadata loaded", summary["entity_id"] == SP_BASE and summary["authn_requests_signed"], summary)
    check("SP metadata has both certs", len(summary["signing_certs"]) == 1 and len(summary["encryption_certs"]) == 1)
    browser = Browser()

    # --- SP-initiated, Redirect binding, signed request, default options (both signed).
    reqid, page = sign_in(browser, client, idp_entity, relay_state="/after?x=1&y=2")
    fields = acs_post(page)
    check("RelayState echoed", fields.get("RelayState") == "/after?x=1&y=2", fields.get("RelayState"))
    xml = response_xml(fields)
    check("default: response and assertion signed", sorted(signature_parents(xml)) == ["Assertion", "Response"], signature_parents(xml))
    check("the Response is valid against the SAML schema", idpmod.schema_error(xml) is None, idpmod.schema_error(xml))
    check("rsa-sha256 used", "xmldsig-more#rsa-sha256" in xml and "xmlenc#sha256" in xml)
    check("Destination and InResponseTo", f'Destination="{ACS}"' in xml and f'InResponseTo="{reqid}"' in xml)
    resp = consume(client, fields, reqid)
    ava = resp.get_identity()
    check("pysaml2 SP accepts the response", resp is not None)
    check("attributes (oid profile)", ava.get("mail") == [EMAIL] and ava.get("givenName") == ["Ada"] and ava.get("sn") == ["Lovelace"], ava)
    check("groups attribute", sorted(ava.get("isMemberOf", [])) == ["admins", "engineering"], ava)
    nid = resp.name_id
    check("emailAddress NameID", nid.text == EMAIL and nid.format.endswith("emailAddress"), str(nid))
    log = control(idp_url, "/control/log?type=AuthnRequest")
    last = log[-1]
    check("log: AuthnRequest valid against the SAML schema", last["schema_error"] is None, last["schema_error"])
    check(
        "log: AuthnRequest signed, valid, rsa-sha256",
        last["signed"] and last["signature_valid"] and last["sig_alg"].endswith("rsa-sha256") and last["binding"] == "redirect",
        last,
    )
    session_index = resp.assertion.authn_statement[0].session_index

    # --- wrong password shows the form again.
    reqid2, info = client.prepare_for_authenticate(entityid=idp_entity, relay_state="/x")
    r = browser.get(dict(info["headers"])["Location"])
    login = Forms(r.text).forms[0]
    r = browser.post(idp_url + "/idp/login", dict(login["fields"], username="ada", password="nope"))
    check("wrong password refused", r.status_code == 200 and "Wrong username or password" in r.text and ACS not in r.text)

    # --- unsigned AuthnRequest refused (SP metadata says AuthnRequestsSigned).
    _, info = client.prepare_for_authenticate(entityid=idp_entity, relay_state="/x", sign=False)
    r = browser.get(dict(info["headers"])["Location"])
    check("unsigned AuthnRequest refused", r.status_code == 400 and "not signed" in r.text, (r.status_code, r.text[:300]))
    check("log: unsigned request recorded", control(idp_url, "/control/log?type=AuthnRequest")[-1]["signed"] is False)

    # --- tampered Redirect signature refused.
    _, info = client.prepare_for_authenticate(entityid=idp_entity, relay_state="/x")
    loc = dict(info["headers"])["Location"].replace("RelayState=%2Fx", "RelayState=%2Fy")
    r = browser.get(loc)
    check("tampered redirect signature refused", r.status_code == 400 and "does not verify" in r.text, (r.status_code, r.text[:300]))

    # --- POST binding with an enveloped signature.
    reqid, page = sign_in(browser, client, idp_entity, binding=BINDING_HTTP_POST, relay_state="/post")
    fields = acs_post(page)
    resp = consume(client, fields, reqid)
    last = control(idp_url, "/control/log?type=AuthnRequest")[-1]
    check(
        "POST binding: signed AuthnRequest verified",
        last["binding"] == "post" and last["signed"] and last["signature_valid"] and last["sig_alg"].endswith("rsa-sha256"),
        last,
    )
    check("POST binding: response accepted", resp is not None and resp.name_id.text == EMAIL)

    # --- signing variants.
    for sign_response, sign_assertion, expect in ((True, False, ["Response"]), (False, True, ["Assertion"])):
        control(idp_url, "/control/config", {"response": {"sign_response": sign_response, "sign_assertion": sign_assertion}})
        reqid, page = sign_in(browser, client, idp_entity)
        fields = acs_post(page)
        xml = response_xml(fields)
        check(f"only {expect[0]} signed", signature_parents(xml) == expect, signature_parents(xml))
        resp = consume(client, fields, reqid)
        check(f"only {expect[0]} signed: accepted", resp is not None and resp.name_id.text == EMAIL)

    # --- tampering after signing is caught by the SP (the signatures are real).
    control(idp_url, "/control/config", {"response": {"sign_response": True, "sign_assertion": True}})
    reqid, page = sign_in(browser, client, idp_entity)
    fields = acs_post(page)
    bad = response_xml(fields).replace(EMAIL, "eve@corp.example")
    try:
        consume(client, {"SAMLResponse": base64.b64encode(bad.encode()).decode()}, reqid)
        check("tampered response rejected by the SP", False, "accepted")
    except Exception as e:  # noqa: BLE001
        check("tampered response rejected by the SP", True, repr(e))

    # --- encrypted assertion: AES-256-GCM and AES-128-CBC, RSA-OAEP.
    for alg, sign_assertion in (("aes256-gcm", True), ("aes128-cbc", False), ("aes256-cbc", True), ("aes128-gcm", True)):
        control(
            idp_url,
            "/control/config",
            {"response": {"encrypt_assertion": True, "encryption_alg": alg, "sign_assertion": sign_assertion, "sign_response": True}},
        )
        reqid, page = sign_in(browser, client, idp_entity)
        fields = acs_post(page)
        xml = response_xml(fields)
        check(
            f"{alg}: EncryptedAssertion only",
            "EncryptedAssertion" in xml and "<ns1:Assertion" not in xml and "saml:Assertion " not in xml and alg.replace("-", "") in xml.replace("-", ""),
            xml[:800],
        )
        check(f"{alg}: valid against the SAML schema", idpmod.schema_error(xml) is None, idpmod.schema_error(xml))
        check(f"{alg}: response signature outside", signature_parents(xml) == ["Response"], signature_parents(xml))
        try:
            resp = consume(client, fields, reqid)
            ok = resp.name_id.text == EMAIL and resp.get_identity().get("mail") == [EMAIL]
            signed_inside = resp.assertion.signature is not None
            check(f"{alg}: decrypted by the SP", ok, resp.get_identity())
            check(f"{alg}: inner assertion signed = {sign_assertion}", signed_inside == sign_assertion)
        except Exception as e:  # noqa: BLE001
            check(f"{alg}: decrypted by the SP", False, repr(e))
    control(idp_url, "/control/config", {"response": {"encrypt_assertion": False}})

    # --- NameID formats.
    control(idp_url, "/control/config", {"response": {"name_id_format": "persistent"}})
    ids = []
    for _ in range(2):
        reqid, page = sign_in(browser, client, idp_entity)
        resp = consume(client, acs_post(page), reqid)
        ids.append((resp.name_id.text, resp.name_id.format, resp.name_id.sp_name_qualifier))
    check("persistent NameID stable and qualified", ids[0] == ids[1] and ids[0][1].endswith("persistent") and ids[0][2] == SP_BASE, ids)
    control(idp_url, "/control/config", {"response": {"name_id_format": "transient"}})
    ids = []
    for _ in range(2):
        reqid, page = sign_in(browser, client, idp_entity)
        ids.append(consume(client, acs_post(page), reqid).name_id.text)
    check("transient NameID differs each time", ids[0] != ids[1], ids)
    control(idp_url, "/control/config", {"response": {"name_id_format": "emailAddress"}})

    # --- attribute change at runtime (JIT profile updates), Entra claim names.
    control(
        idp_url,
        "/control/config",
        {
            "users": {"ada": {"password": PASSWORD, "attributes": {"email": EMAIL, "givenName": "Augusta", "sn": "King", "groups": ["engineering"]}}},
            "response": {"attribute_profile": "entra"},
        },
    )
    reqid, page = sign_in(browser, client, idp_entity)
    xml = response_xml(acs_post(page))
    check(
        "entra claim names and updated values",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname" in xml and "Augusta" in xml and "admins" not in xml,
        xml[:1500],
    )
    control(idp_url, "/control/config", {"response": {"attribute_profile": "oid", "attribute_names": {"email": "email"}}})
    reqid, page = sign_in(browser, client, idp_entity)
    xml = response_xml(acs_post(page))
    check("attribute_names override", 'Name="email"' in xml, xml[:1500])
    control(idp_url, "/control/config", {"response": {"attribute_names": {}}})

    # --- SHA-1 on request (to test the SP's refusal).
    control(idp_url, "/control/config", {"response": {"sign_alg": "rsa-sha1"}})
    reqid, page = sign_in(browser, client, idp_entity)
    xml = response_xml(acs_post(page))
    check("rsa-sha1 signature when asked", "xmldsig#rsa-sha1" in xml and "xmldsig#sha1" in xml)
    control(idp_url, "/control/config", {"response": {"sign_alg": "rsa-sha256"}})

    # --- IdP-initiated (unsolicited).
    r = browser.get(idp_url + "/idp/initiate?" + urllib.parse.urlencode({"sp": SP_BASE, "user": "ada", "relay_state": "/landing"}))
    fields = acs_post(r.text)
    xml = response_xml(fields)
    check("IdP-initiated: no InResponseTo", "InResponseTo" not in xml and fields.get("RelayState") == "/landing")
    resp = consume(client, fields, None)
    check("IdP-initiated: accepted by an SP allowing unsolicited", resp is not None and resp.name_id.text == EMAIL)
    r = browser.get(idp_url + "/idp/initiate?" + urllib.parse.urlencode({"sp": SP_BASE}))
    login = Forms(r.text).forms[0]
    r = browser.post(idp_url + "/idp/login", dict(login["fields"], username="ada", password=PASSWORD))
    check("IdP-initiated with the login form", acs_post(r.text) is not None)

    # --- SP-initiated SLO (Redirect), for the first session.
    reqid, page = sign_in(browser, client, idp_entity)
    resp = consume(client, acs_post(page), reqid)
    name_id = resp.name_id
    session_index = resp.assertion.authn_statement[0].session_index
    slo_url = idp_url + "/idp/slo/redirect"
    _, lreq = client.create_logout_request(slo_url, idp_entity, name_id=name_id, session_indexes=[session_index], sign=False)
    info = client.apply_binding(BINDING_HTTP_REDIRECT, str(lreq), slo_url, "/bye", sign=True, sigalg=SIG_RSA_SHA256)
    r = browser.get(dict(info["headers"])["Location"])
    check("SP-initiated SLO: IdP redirects to the SP's SLO", r.status_code == 303 and r.headers["Location"].startswith(SLO + "?"), (r.status_code, r.text[:300]))
    loc = r.headers["Location"]
    _, params = redirect_parts(loc)
    idp_cert = control(idp_url, "/control/config")["keys"]["active"]["body"]
    check("SP-initiated SLO: LogoutResponse signature verifies", verify_redirect(loc, [idp_cert]))
    lresp_xml = inflate_param(params["SAMLResponse"])
    check("SP-initiated SLO: Success, InResponseTo, RelayState", "status:Success" in lresp_xml and lreq.id in lresp_xml and params.get("RelayState") == "/bye", lresp_xml)
    parsed = client.parse_logout_request_response(params["SAMLResponse"], BINDING_HTTP_REDIRECT)
    check("SP-initiated SLO: pysaml2 parses the LogoutResponse", parsed is not None and parsed.status_ok())
    last = control(idp_url, "/control/log?type=LogoutRequest")[-1]
    check("log: LogoutRequest valid against the SAML schema", last["schema_error"] is None, last["schema_error"])
    check("log: LogoutRequest signed, valid, ended the session", last["signature_valid"] and last["ended_sessions"] == 1 and last["session_indexes"] == [session_index], last)

    # --- IdP-initiated SLO (Redirect and POST).
    for binding in ("redirect", "post"):
        reqid, page = sign_in(browser, client, idp_entity)
        resp = consume(client, acs_post(page), reqid)
        sidx = resp.assertion.authn_statement[0].session_index
        r = browser.get(idp_url + f"/idp/logout-user?user=ada&binding={binding}")
        if binding == "redirect":
            check("IdP-initiated SLO: redirect to the SP", r.status_code == 303 and r.headers["Location"].startswith(SLO + "?"), (r.status_code, r.text[:200]))
            loc = r.headers["Location"]
            _, params = redirect_parts(loc)
            check("IdP-initiated SLO: LogoutRequest signature verifies", verify_redirect(loc, [idp_cert]))
            req = client.parse_logout_request(
                params["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state=params.get("RelayState"), sigalg=params["SigAlg"], signature=params["Signature"]
            )
        else:
            form = Forms(r.text).forms[0]
            check("IdP-initiated SLO: POST form to the SP", form["action"] == SLO, form)
            params = form["fields"]
            req = client.parse_logout_request(params["SAMLRequest"], BINDING_HTTP_POST)
            xml = base64.b64decode(params["SAMLRequest"]).decode()
            check("IdP-initiated SLO (post): enveloped signature", signature_parents(xml) == ["LogoutRequest"], xml[:400])
        msg = req.message
        check(
            f"IdP-initiated SLO ({binding}): NameID and SessionIndex",
            msg.name_id.text == EMAIL and [s.text for s in msg.session_index] == [sidx],
            str(msg),
        )
        lresp = client.create_logout_response(msg, [BINDING_HTTP_REDIRECT], sign=False)
        info = client.apply_binding(BINDING_HTTP_REDIRECT, str(lresp), idp_url + "/idp/slo/redirect", "", response=True, sign=True, sigalg=SIG_RSA_SHA256)
        r = browser.get(dict(info["headers"])["Location"])
        check(f"IdP-initiated SLO ({binding}): IdP shows the result", r.status_code == 200 and 'id="slo-result"' in r.text and "Signed out" in r.text, r.text[:400])
        last = control(idp_url, "/control/log?type=LogoutResponse")[-1]
        check(f"log: LogoutResponse matched and verified ({binding})", last["matched"] and last["signature_valid"], last)

    # --- key rollover: announce, switch, retire.
    old_cert = idp_cert
    state = control(idp_url, "/control/rotate-key", {"stage": "announce"})
    md = requests.get(idp_url + "/idp/metadata").text
    check("announce: two signing certs published, old still signs", md.count('use="signing"') == 2 and state["active"]["body"] == old_cert)
    state = control(idp_url, "/control/rotate-key", {"stage": "switch"})
    new_cert = state["active"]["body"]
    md = requests.get(idp_url + "/idp/metadata").text
    check("switch: new cert first in metadata, both published", new_cert != old_cert and md.index(new_cert) < md.index(old_cert))
    reqid, page = sign_in(browser, client, idp_entity)  # the SP still holds the old metadata only
    fields = acs_post(page)
    try:
        consume(client, fields, reqid)
        check("switch: an SP with stale metadata refuses the new key", False, "accepted")
    except Exception as e:  # noqa: BLE001
        check("switch: an SP with stale metadata refuses the new key", True, repr(e))
    client2, _ = sp_client(tmp, md, name="sp2")
    control(idp_url, "/control/sp", {"xml": sp_metadata(client2.config)})  # the IdP now knows the SP's new keys
    reqid, page = sign_in(browser, client2, idp_entity)
    resp = consume(client2, acs_post(page), reqid)
    check("switch: an SP with refreshed metadata accepts", resp is not None and resp.name_id.text == EMAIL)
    control(idp_url, "/control/rotate-key", {"stage": "retire"})
    md = requests.get(idp_url + "/idp/metadata").text
    check("retire: only the new cert", md.count('use="signing"') == 1 and new_cert in md and old_cert not in md)

    # --- metadata switches.
    control(idp_url, "/control/config", {"metadata": {"sso_bindings": ["post"], "slo_bindings": [], "include_signing_cert": False}})
    md = requests.get(idp_url + "/idp/metadata").text
    check("metadata switches", "SingleLogoutService" not in md and "sso/redirect" not in md and "KeyDescriptor" not in md, md)
    control(idp_url, "/control/config", {"metadata": {"sso_bindings": ["redirect", "post"], "slo_bindings": ["redirect", "post"], "include_signing_cert": True}})

    # --- error status.
    control(idp_url, "/control/config", {"response": {"status": "urn:oasis:names:tc:SAML:2.0:status:Responder"}})
    reqid, page = sign_in(browser, client2, idp_entity)
    check("status override", "status:Responder" in response_xml(acs_post(page)))
    control(idp_url, "/control/config", {"response": {"status": None}})

    # --- SP metadata by URL (served by a throwaway local HTTP server) and by file.
    md_path = os.path.join(tmp, "sp-md.xml")
    with open(md_path, "w") as f:
        f.write(sp_metadata(client2.config))
    check("SP metadata from a file", control(idp_url, "/control/sp", {"file": md_path})["entity_id"] == SP_BASE)
    srv = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", tmp],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        line = srv.stdout.readline()
        port = re.search(r"port (\d+)", line).group(1)
        got = control(idp_url, "/control/sp", {"url": f"http://127.0.0.1:{port}/sp-md.xml"})
        check("SP metadata from a URL", got["entity_id"] == SP_BASE)
    finally:
        srv.terminate()
        srv.wait(timeout=10)

    # --- unknown SP.
    r = browser.get(idp_url + "/idp/initiate?sp=http://nowhere.example/sp")
    check("unknown SP refused", r.status_code == 400)


if __name__ == "__main__":
    main()
