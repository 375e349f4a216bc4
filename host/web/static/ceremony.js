// Runs the browser ceremony a secmod prompt asks for (Prompt.ceremony: a security key or
// passkey) and posts the credential's JSON back in the prompt's hidden answer field.
// Served from the site's own origin: the CSP allows script-src 'self' and nothing inline.
"use strict";

(function () {
  function bytes(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    return Uint8Array.from(raw, (ch) => ch.charCodeAt(0)).buffer;
  }

  function text(buffer) {
    if (buffer === null || buffer === undefined) return null;
    let raw = "";
    new Uint8Array(buffer).forEach((b) => { raw += String.fromCharCode(b); });
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map((item) => Object.assign({}, item, { id: bytes(item.id) }));
  }

  // The options are WebAuthn's *JSON forms: binary members are base64url text.
  function creationOptions(options) {
    return Object.assign({}, options, {
      challenge: bytes(options.challenge),
      user: Object.assign({}, options.user, { id: bytes(options.user.id) }),
      excludeCredentials: withIds(options.excludeCredentials),
    });
  }

  function requestOptions(options) {
    return Object.assign({}, options, {
      challenge: bytes(options.challenge),
      allowCredentials: withIds(options.allowCredentials),
    });
  }

  // PublicKeyCredential.toJSON() where the browser has it; the same shape by hand otherwise.
  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: text(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: text(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = text(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = text(response.authenticatorData);
      json.response.signature = text(response.signature);
      json.response.userHandle = text(response.userHandle);
    }
    return json;
  }

  function start(ceremony) {
    const form = ceremony.closest("form");
    const button = ceremony.querySelector(".ceremony-start");
    const status = ceremony.querySelector(".ceremony-status");
    const answer = form.elements.namedItem(ceremony.dataset.ceremonyField);
    const say = (message) => { status.textContent = message; status.hidden = false; };
    if (!window.PublicKeyCredential || !navigator.credentials || !answer) {
      say("This browser cannot use security keys or passkeys. Try another browser, or use a backup code.");
      return;
    }
    button.hidden = false;
    button.addEventListener("click", async () => {
      if (!form.reportValidity()) return;
      const options = JSON.parse(ceremony.dataset.ceremonyOptions);
      button.disabled = true;
      say("Waiting for your security key or passkey\u2026");
      try {
        const credential = ceremony.dataset.ceremonyKind === "webauthn.create"
          ? await navigator.credentials.create({ publicKey: creationOptions(options) })
          : await navigator.credentials.get({ publicKey: requestOptions(options) });
        answer.value = JSON.stringify(credentialJSON(credential));
        say("Checking\u2026");
        form.submit();
      } catch (error) {
        // NotAllowedError: cancelled or timed out; InvalidStateError: this key is already registered.
        const known = {
          NotAllowedError: "The request was cancelled or timed out. Press the button to try again.",
          InvalidStateError: "This security key is already registered for you. Use another one.",
        };
        say(known[error.name] || `Your security key could not be used (${error.name}). Press the button to try again.`);
        button.disabled = false;
      }
    });
  }

  document.querySelectorAll("[data-ceremony-kind]").forEach(start);
})();
