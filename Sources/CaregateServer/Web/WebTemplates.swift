/// The console's Mustache templates and its one stylesheet, carried in the binary like the
/// catalogs (so it runs from any directory). `{{name}}` escapes HTML; no template uses the
/// unescaped `{{{name}}}` form, so anything a user typed is shown as text.
enum WebTemplates {
    static let all: [String: String] = [
        "layout": layout, "scopes": scopes, "sign-in": signIn, "message": message, "developer": developer, "app": app,
        "key-created": keyCreated, "client-created": clientCreated, "clinic": clinic, "installation": installation, "audit": audit, "operator": operatorHome, "reviews": reviews,
        "authorize-error": authorizeError, "authorize-sign-in": authorizeSignIn, "authorize-patient": authorizePatient,
        "authorize-consent": authorizeConsent,
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{$title}}Caregate{{/title}}</title>
        <link rel="stylesheet" href="/assets/caregate.css">
        </head>
        <body>
        <a class="skip" href="#main">Skip to content</a>
        <header>
        <nav aria-label="Caregate">
        <a href="/scopes">Scope reference</a>
        <a href="/console">Console</a>
        {{#session}}<span class="who">Signed in as {{role}}</span>
        <form method="post" action="/console/sign-out" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Sign out</button></form>{{/session}}
        </nav>
        </header>
        <main id="main">
        {{$body}}{{/body}}
        </main>
        </body>
        </html>
        """

    static let scopes = """
        {{<layout}}{{$title}}Scope reference — {{surfaceTitle}}{{/title}}{{$body}}
        <h1>Scope reference</h1>
        <p class="lead">{{surfaceTitle}}</p>
        <ul class="stats" aria-label="Catalog counts">
        <li><strong id="count-scopes">{{stats.scopes}}</strong> scopes</li>
        <li><strong id="count-categories">{{stats.categories}}</strong> categories</li>
        <li><strong id="count-smart">{{stats.smart}}</strong> SMART</li>
        <li><strong id="count-self-service">{{stats.selfService}}</strong> self-service</li>
        </ul>
        <form method="get" action="/scopes" class="filters" role="search">
        <label for="surface">Catalog</label>
        <select id="surface" name="surface">{{#surfaces}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/surfaces}}</select>
        <label for="q">Text</label>
        <input id="q" name="q" type="search" value="{{q}}" maxlength="100">
        <label for="category">Category</label>
        <select id="category" name="category"><option value="">Any</option>{{#categories}}<option{{#selected}} selected{{/selected}}>{{name}}</option>{{/categories}}</select>
        <label for="credentialType">Credential type</label>
        <select id="credentialType" name="credentialType"><option value="">Any</option>{{#credentialTypes}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/credentialTypes}}</select>
        <label for="selfService">Self-service</label>
        <select id="selfService" name="selfService"><option value="">Any</option><option value="yes"{{#selfServiceYes}} selected{{/selfServiceYes}}>Self-service only</option><option value="no"{{#selfServiceNo}} selected{{/selfServiceNo}}>Approval required</option></select>
        <button type="submit">Filter</button>
        </form>
        <p id="matching"><strong>{{matching}}</strong> matching scopes</p>
        {{#groups}}
        <section aria-labelledby="cat-{{anchor}}">
        <h2 id="cat-{{anchor}}">{{category}} <span class="count">({{count}})</span></h2>
        {{#scopes}}
        <article class="scope" id="{{name}}">
        <h3><a href="#{{name}}"><code>{{name}}</code></a>{{#selfService}} <span class="badge">Self-service</span>{{/selfService}}{{#smart}} <span class="badge">SMART</span>{{/smart}}</h3>
        <p>{{description}}</p>
        <dl>
        <dt>Credential types</dt><dd class="credential-types">{{#credentialTypes}}<span class="tag">{{.}}</span> {{/credentialTypes}}</dd>
        {{#hasProducts}}<dt>Products</dt><dd class="products">{{#products}}<span class="tag">{{.}}</span> {{/products}}</dd>{{/hasProducts}}
        {{#hasEndpoints}}<dt>Endpoints</dt><dd><ul class="endpoints">{{#endpoints}}<li><code>{{.}}</code></li>{{/endpoints}}</ul></dd>{{/hasEndpoints}}
        </dl>
        </article>
        {{/scopes}}
        </section>
        {{/groups}}
        {{/body}}{{/layout}}
        """

    static let signIn = """
        {{<layout}}{{$title}}Sign in — Caregate{{/title}}{{$body}}
        <h1>Sign in</h1>
        <p>Sign in with your management token: an operator, developer or clinic-admin token.</p>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/console/sign-in">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="token">Management token</label>
        <input id="token" name="token" type="password" autocomplete="off" required maxlength="256">
        <button type="submit">Sign in</button>
        </form>
        {{/body}}{{/layout}}
        """

    // The SMART App Launch pages (`/oauth2/authorize`): field names fixed by SPEC §7, each
    // form carrying the authorization's id and CSRF token.

    static let authorizeError = """
        {{<layout}}{{$title}}Cannot continue — Caregate{{/title}}{{$body}}
        <h1>This request cannot continue</h1>
        <p class="error" role="alert">{{text}}</p>
        {{/body}}{{/layout}}
        """

    static let authorizeSignIn = """
        {{<layout}}{{$title}}Sign in to continue to {{app}} — Caregate{{/title}}{{$body}}
        <h1>Sign in</h1>
        <p><strong>{{app}}</strong> asks to use your clinic's records. Sign in with your clinic account to continue.</p>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/oauth2/authorize/sign-in">
        <input type="hidden" name="request" value="{{request}}">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="username">Username</label>
        <input id="username" name="username" type="text" autocomplete="username" required maxlength="64" autofocus>
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="256">
        <button type="submit">Sign in</button>
        </form>
        {{/body}}{{/layout}}
        """

    static let authorizePatient = """
        {{<layout}}{{$title}}Choose a patient — Caregate{{/title}}{{$body}}
        <h1>Choose a patient</h1>
        <p>The app works with one patient at a time. Choose the patient whose records it may use.</p>
        {{#error}}<p class="error" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/oauth2/authorize/patient">
        <input type="hidden" name="request" value="{{request}}">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <fieldset>
        <legend>Patients of your clinic</legend>
        {{#patients}}
        <div class="choice"><input type="radio" name="patient" id="patient-{{id}}" value="{{id}}" required>
        <label for="patient-{{id}}">{{name}} <span class="muted">born {{birthDate}} · {{id}}</span></label></div>
        {{/patients}}
        {{^patients}}<p>Your clinic has no patients.</p>{{/patients}}
        </fieldset>
        {{#more}}<p class="muted">The first 200 patients are listed.</p>{{/more}}
        <button type="submit">Continue</button>
        </form>
        {{/body}}{{/layout}}
        """

    static let authorizeConsent = """
        {{<layout}}{{$title}}Allow {{app}}? — Caregate{{/title}}{{$body}}
        <h1>Allow {{app}}?</h1>
        <p>Signed in as <strong>{{who}}</strong>. <strong>{{app}}</strong> asks for the permissions below. Untick any you do not want to give.</p>
        <form method="post" action="/oauth2/authorize/consent">
        <input type="hidden" name="request" value="{{request}}">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <fieldset>
        <legend>Permissions</legend>
        {{#scopes}}
        <div class="choice"><input type="checkbox" name="scope" id="scope-{{name}}" value="{{name}}" checked>
        <label for="scope-{{name}}"><code>{{name}}</code> — {{description}}</label></div>
        {{/scopes}}
        </fieldset>
        <button type="submit" name="decision" value="approve">Allow</button>
        <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
        </form>
        {{/body}}{{/layout}}
        """

    static let message = """
        {{<layout}}{{$title}}{{heading}} — Caregate{{/title}}{{$body}}
        <h1>{{heading}}</h1>
        <p{{#isError}} class="error" role="alert"{{/isError}}>{{text}}</p>
        {{#traceId}}<p class="trace">Trace id <code>{{traceId}}</code></p>{{/traceId}}
        <p><a href="{{back}}">Back</a></p>
        {{/body}}{{/layout}}
        """

    static let developer = """
        {{<layout}}{{$title}}Your apps — Caregate{{/title}}{{$body}}
        <h1>Your apps</h1>
        {{^apps}}<p>You have no apps yet. Create one with <code>POST /manage/apps</code>.</p>{{/apps}}
        {{#hasApps}}
        <table>
        <caption>Apps and their live version</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Slug</th><th scope="col">Surface</th><th scope="col">Declared scopes</th></tr></thead>
        <tbody>
        {{#apps}}<tr><td><a href="/console/apps/{{id}}">{{name}}</a></td><td><code>{{slug}}</code></td><td>{{surface}}</td><td>{{scopeCount}}</td></tr>{{/apps}}
        </tbody>
        </table>
        {{/hasApps}}
        {{/body}}{{/layout}}
        """

    static let app = """
        {{<layout}}{{$title}}{{app.name}} — Caregate{{/title}}{{$body}}
        <h1>{{app.name}}</h1>
        <p><code>{{app.slug}}</code> on {{app.surface}}, live version <code>{{app.liveVersionId}}</code></p>
        <h2>Declared scopes</h2>
        <ul class="scopes">{{#app.scopes}}<li><a href="/scopes?surface={{surface}}#{{.}}"><code>{{.}}</code></a></li>{{/app.scopes}}</ul>
        {{#hasReviews}}
        <h2 id="reviews">Operator reviews of this app's scopes</h2>
        <p>On this surface a scope that is not self-service takes effect once an operator approves it.</p>
        <ul class="reviews">{{#reviews}}<li><code>{{scope}}</code>: {{status}}{{#reason}} — {{reason}}{{/reason}}</li>{{/reviews}}</ul>
        {{/hasReviews}}
        <h2 id="keys">My Tokens &amp; Keys</h2>
        {{^hasKeys}}<p>No keys yet.</p>{{/hasKeys}}
        {{#hasKeys}}
        <table>
        <caption>API keys of this app (the secret is shown once, when a key is created)</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Environment</th><th scope="col">Scopes</th><th scope="col">State</th><th scope="col">Last used</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
        {{#keys}}<tr id="key-{{id}}"><td>{{name}}</td><td><code>{{display}}</code></td><td>{{environment}}</td><td>{{scopeText}}</td><td>{{state}}</td><td class="last-used">{{lastUsed}}</td>
        <td>{{#rotatable}}<form method="post" action="/console/keys/{{id}}/rotate" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="appId" value="{{appId}}"><button type="submit">Rotate {{name}} (1 hour grace)</button></form>{{/rotatable}}
        {{#active}}<form method="post" action="/console/keys/{{id}}/revoke" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="appId" value="{{appId}}"><button type="submit">Revoke {{name}}</button></form>{{/active}}</td></tr>{{/keys}}
        </tbody>
        </table>
        {{/hasKeys}}
        <h2 id="clients">OAuth clients</h2>
        {{^hasClients}}<p>No OAuth clients yet.</p>{{/hasClients}}
        {{#hasClients}}
        <table>
        <caption>Clients of this app (a secret is shown once, when the client is created)</caption>
        <thead><tr><th scope="col">Client id</th><th scope="col">Credential type</th><th scope="col">Scopes</th><th scope="col">Authentication</th></tr></thead>
        <tbody>{{#clients}}<tr><td><code>{{clientId}}</code></td><td>{{credentialType}}</td><td>{{scopeText}}</td><td>{{tokenEndpointAuthMethod}}</td></tr>{{/clients}}</tbody>
        </table>
        {{/hasClients}}
        <h3>Register a client (client_credentials, with a secret)</h3>
        <form method="post" action="/console/apps/{{app.id}}/oauth-clients">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="client-type">Credential type</label>
        <select id="client-type" name="credentialType"><option value="oauth2">OAuth 2.0</option><option value="service_key">Service Key</option></select>
        <fieldset>
        <legend>Scopes</legend>
        {{#app.scopes}}<label class="check"><input type="checkbox" name="scopes" value="{{.}}"> <code>{{.}}</code></label>{{/app.scopes}}
        </fieldset>
        <button type="submit">Register client</button>
        </form>
        <h2 id="usage">Least-privilege report (last {{usageDays}} days)</h2>
        <table>
        <caption>What each key and OAuth client holds, used (from the audit log) and could drop</caption>
        <thead><tr><th scope="col">Credential</th><th scope="col">Holds</th><th scope="col">Used</th><th scope="col">Could drop</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
        {{#usage}}<tr id="usage-{{id}}"><td>{{label}}</td><td class="held">{{heldText}}</td><td class="used">{{usedText}}</td><td class="droppable">{{droppableText}}</td>
        <td>{{#canNarrow}}<form method="post" action="/console/keys/{{id}}/narrow"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="appId" value="{{appId}}"><button type="submit">Narrow this key to what it uses</button></form>{{/canNarrow}}</td></tr>{{/usage}}
        </tbody>
        </table>
        <h3>Create a key</h3>
        <form method="post" action="/console/apps/{{app.id}}/keys">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="key-name">Name</label>
        <input id="key-name" name="name" required maxlength="100">
        <label for="key-environment">Environment</label>
        <select id="key-environment" name="environment"><option value="prd">Production</option><option value="sbx">Sandbox</option></select>
        <fieldset>
        <legend>Scopes (none ticked: the clinic's approved scopes)</legend>
        {{#app.scopes}}<label class="check"><input type="checkbox" name="scopes" value="{{.}}"> <code>{{.}}</code></label>{{/app.scopes}}
        </fieldset>
        <button type="submit">Create key</button>
        </form>
        {{/body}}{{/layout}}
        """

    static let keyCreated = """
        {{<layout}}{{$title}}Key created — Caregate{{/title}}{{$body}}
        <h1>Key created</h1>
        <p role="status">Copy the key now: it is shown this once and Caregate keeps only a hash of it.</p>
        <p><label for="new-key">API key “{{name}}”</label></p>
        <p><input id="new-key" class="secret" readonly value="{{key}}" size="70"></p>
        <p><a href="/console/apps/{{appId}}#keys">Back to the app</a></p>
        {{/body}}{{/layout}}
        """

    static let clinic = """
        {{<layout}}{{$title}}Installed apps — Caregate{{/title}}{{$body}}
        <h1>Installed apps</h1>
        <p><a href="/console/audit">This clinic's audit log</a></p>
        {{^hasInstallations}}<p>No app is installed in this clinic.</p>{{/hasInstallations}}
        {{#hasInstallations}}
        <table>
        <caption>Apps installed in this clinic and what they may use</caption>
        <thead><tr><th scope="col">App</th><th scope="col">Surface</th><th scope="col">Approved scopes</th><th scope="col">Review</th></tr></thead>
        <tbody>
        {{#installations}}<tr><td><a href="/console/installations/{{id}}">{{appName}}</a></td><td>{{appSurface}}</td><td>{{approvedCount}}</td><td>{{#needsReview}}<strong>New version to review</strong>{{/needsReview}}{{^needsReview}}Up to date{{/needsReview}}</td></tr>{{/installations}}
        </tbody>
        </table>
        {{/hasInstallations}}
        <h2 id="users">Clinic users</h2>
        <p>The people who sign in to SMART apps for this clinic: clinicians (linked to a provider) and patients (linked to a patient record).</p>
        {{#hasUsers}}
        <table>
        <caption>Clinic users</caption>
        <thead><tr><th scope="col">Username</th><th scope="col">Role</th><th scope="col">FHIR user</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>{{#users}}<tr><td>{{username}}</td><td>{{role}}</td><td><code>{{fhirUser}}</code></td>
        <td><form method="post" action="/console/users/{{id}}/delete"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Remove {{username}}</button></form></td></tr>{{/users}}</tbody>
        </table>
        {{/hasUsers}}
        <h3>Add a user</h3>
        <form method="post" action="/console/users">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="user-name">Username</label> <input id="user-name" name="username" required minlength="3" maxlength="64" autocomplete="off">
        <label for="user-password">Password (at least 12 characters)</label> <input id="user-password" name="password" type="password" required minlength="12" maxlength="256" autocomplete="new-password">
        <label for="user-role">Role</label> <select id="user-role" name="role"><option value="clinician">Clinician</option><option value="patient">Patient</option></select>
        <label for="user-provider">Provider (for a clinician)</label> <select id="user-provider" name="providerId"><option value="">—</option>{{#providers}}<option value="{{id}}">{{label}}</option>{{/providers}}</select>
        <label for="user-patient">Patient (for a patient)</label> <select id="user-patient" name="patientId"><option value="">—</option>{{#patients}}<option value="{{id}}">{{label}}</option>{{/patients}}</select>
        <button type="submit">Add user</button>
        </form>
        {{/body}}{{/layout}}
        """

    static let installation = """
        {{<layout}}{{$title}}{{appName}} — Caregate{{/title}}{{$body}}
        <h1>{{appName}}</h1>
        <p>Installed on {{appSurface}}. {{#needsReview}}<strong>The app has a new version:</strong> review what it asks for and approve again; until then it keeps what was approved before.{{/needsReview}}</p>
        {{#hasAdded}}<h2>New in this version</h2><ul class="added">{{#added}}<li><code>{{.}}</code></li>{{/added}}</ul>{{/hasAdded}}
        {{#hasRemoved}}<h2>No longer requested</h2><ul class="removed">{{#removed}}<li><code>{{.}}</code></li>{{/removed}}</ul>{{/hasRemoved}}
        <form method="post" action="/console/installations/{{id}}/approve">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <fieldset>
        <legend>Scopes the app asks for (ticked: approved)</legend>
        {{#rows}}
        <div class="scope-choice">
        <label class="check"><input type="checkbox" name="scopes" value="{{name}}"{{#approved}} checked{{/approved}}> <code>{{name}}</code>{{#isNew}} <span class="badge">new</span>{{/isNew}}</label>
        <p>{{description}} <span class="credential-types">{{#credentialTypes}}<span class="tag">{{.}}</span> {{/credentialTypes}}</span></p>
        </div>
        {{/rows}}
        </fieldset>
        <button type="submit">Approve the ticked scopes</button>
        </form>
        <form method="post" action="/console/installations/{{id}}/uninstall">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit">Uninstall {{appName}}</button>
        </form>
        {{/body}}{{/layout}}
        """

    static let audit = """
        {{<layout}}{{$title}}Audit log — Caregate{{/title}}{{$body}}
        <h1>Audit log</h1>
        <form method="get" action="/console/audit" class="filters" role="search">
        {{#isOperator}}<label for="organizationId">Clinic</label><input id="organizationId" name="organizationId" value="{{filters.organizationId}}" maxlength="40">{{/isOperator}}
        <label for="appId">App</label><input id="appId" name="appId" value="{{filters.appId}}" maxlength="40">
        <label for="decision">Decision</label>
        <select id="decision" name="decision"><option value="">Any</option><option value="allowed"{{#allowedSelected}} selected{{/allowedSelected}}>Allowed</option><option value="denied"{{#deniedSelected}} selected{{/deniedSelected}}>Denied</option></select>
        <label for="traceId">Trace id</label><input id="traceId" name="traceId" value="{{filters.traceId}}" maxlength="36">
        <label for="since">From (UTC day)</label><input id="since" name="since" type="date" value="{{filters.since}}">
        <label for="until">To (UTC day)</label><input id="until" name="until" type="date" value="{{filters.until}}">
        <button type="submit">Filter</button>
        </form>
        {{^hasEvents}}<p>No events match.</p>{{/hasEvents}}
        {{#hasEvents}}
        <table>
        <caption>Newest first</caption>
        <thead><tr><th scope="col">Time (UTC)</th><th scope="col">Decision</th><th scope="col">Status</th><th scope="col">Request</th><th scope="col">Scope required</th><th scope="col">App</th><th scope="col">Clinic</th><th scope="col">Trace id</th></tr></thead>
        <tbody>
        {{#events}}<tr class="{{decision}}"><td>{{at}}</td><td>{{decision}}</td><td>{{status}}</td><td><code>{{method}} {{path}}</code></td><td>{{requiredScope}}</td><td>{{appId}}</td><td>{{organizationId}}</td><td><code class="trace">{{traceId}}</code></td></tr>{{/events}}
        </tbody>
        </table>
        {{/hasEvents}}
        {{#next}}<p><a href="{{next}}">Older events</a></p>{{/next}}
        {{/body}}{{/layout}}
        """

    static let operatorHome = """
        {{<layout}}{{$title}}Operator — Caregate{{/title}}{{$body}}
        <h1>Operator</h1>
        <ul>
        <li><a href="/console/audit">Audit log</a> (every clinic, with filters)</li>
        <li><a href="/console/reviews">Review queue</a> ({{pendingReviews}} pending)</li>
        </ul>
        <h2>Token-signing keys</h2>
        <table>
        <caption>Keys still published; the current one signs</caption>
        <thead><tr><th scope="col">Key id</th><th scope="col">Algorithm</th><th scope="col">Signing</th></tr></thead>
        <tbody>{{#signingKeys}}<tr><td><code>{{kid}}</code></td><td>{{algorithm}}</td><td>{{#current}}yes{{/current}}</td></tr>{{/signingKeys}}</tbody>
        </table>
        <form method="post" action="/console/signing-keys/rotate"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Rotate the signing key</button></form>
        {{/body}}{{/layout}}
        """

    static let reviews = """
        {{<layout}}{{$title}}Review queue — Caregate{{/title}}{{$body}}
        <h1>Review queue</h1>
        <p>Scopes apps declared that are not self-service: they take effect for the app's keys and clients once approved.</p>
        {{^hasReviews}}<p>Nothing is waiting.</p>{{/hasReviews}}
        {{#reviews}}
        <section class="review" id="review-{{id}}" aria-labelledby="review-{{id}}-title">
        <h2 id="review-{{id}}-title"><code>{{scope}}</code> for {{appName}}</h2>
        <p>{{description}} <span class="credential-types">{{#credentialTypes}}<span class="tag">{{.}}</span> {{/credentialTypes}}</span></p>
        <p>Requested {{requestedAt}} by app <code>{{appId}}</code>.</p>
        <form method="post" action="/console/reviews/{{id}}/approve" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Approve {{scope}}</button></form>
        <form method="post" action="/console/reviews/{{id}}/refuse">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="reason-{{id}}">Reason for refusing</label>
        <input id="reason-{{id}}" name="reason" required maxlength="500">
        <button type="submit">Refuse {{scope}}</button>
        </form>
        </section>
        {{/reviews}}
        {{/body}}{{/layout}}
        """

    static let clientCreated = """
        {{<layout}}{{$title}}Client registered — Caregate{{/title}}{{$body}}
        <h1>Client registered</h1>
        <p role="status">Copy the secret now: it is shown this once and Caregate keeps only a hash of it.</p>
        <p><label for="client-id">Client id</label> <input id="client-id" readonly value="{{clientId}}" size="40"></p>
        <p><label for="client-secret">Client secret</label> <input id="client-secret" class="secret" readonly value="{{clientSecret}}" size="70"></p>
        <p><a href="/console/apps/{{appId}}#clients">Back to the app</a></p>
        {{/body}}{{/layout}}
        """

    static let stylesheet = """
        :root { color-scheme: light dark; --accent: #0b5cad; --muted: #5b6470; }
        body { font: 16px/1.5 system-ui, sans-serif; margin: 0; }
        header { background: #0d2233; }
        header nav { display: flex; gap: 1.5rem; align-items: center; padding: .75rem 1.5rem; }
        header a, header .who { color: #fff; }
        header .inline { margin-left: auto; }
        main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .5rem; }
        a { color: var(--accent); }
        a:focus, button:focus, input:focus, select:focus { outline: 3px solid #f5a623; outline-offset: 2px; }
        .stats { display: flex; gap: 2rem; list-style: none; padding: 0; }
        .stats strong { font-size: 1.75rem; display: block; }
        .filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin: 1rem 0; }
        .filters label { display: block; font-weight: 600; }
        .scope { border-top: 1px solid #d5dbe1; padding: .75rem 0; }
        .scope:target { background: #fff7e0; }
        .badge, .tag { display: inline-block; border: 1px solid #c3cbd3; border-radius: .25rem; padding: 0 .4rem; font-size: .85rem; }
        .badge { background: #e8f1fb; }
        dt { font-weight: 600; }
        dd { margin: 0 0 .5rem; }
        table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
        th, td { text-align: left; border-bottom: 1px solid #d5dbe1; padding: .4rem .5rem; }
        td code { overflow-wrap: anywhere; }
        caption { text-align: left; color: var(--muted); }
        .error { color: #a4000f; font-weight: 600; }
        .secret { font-family: ui-monospace, monospace; }
        .check { display: block; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
        button { font: inherit; padding: .3rem .8rem; }
        .choice { margin: .3rem 0; }
        .muted { color: var(--muted); }
        button.secondary { background: none; }
        fieldset { border: 1px solid #d5dbe1; margin: 1rem 0; }
        """
}
