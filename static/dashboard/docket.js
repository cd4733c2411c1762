// Docket's own script: small conveniences on top of htmx. Pages work without it.
"use strict";
