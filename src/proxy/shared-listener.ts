/**
 * The shared proxy listener as a small dispatcher: an origin-form request is the reverse
 * proxy's (Host and path choose the route), an absolute-form one the forward proxy's (its
 * destination does); both then enter the same pipeline. CONNECT goes to the forward proxy's
 * connect listener, wired beside this.
 */
import { isAbsoluteForm } from './forward/destination.js';
import type { Entry } from './inbound.js';

export function sharedListenerEntry(reverse: Entry, forward: Entry): Entry {
  return {
    request: (req, res) => (isAbsoluteForm(req.url) ? forward.request(req, res) : reverse.request(req, res)),
    upgrade: (req, socket, head) => (isAbsoluteForm(req.url) ? forward.upgrade(req, socket, head) : reverse.upgrade(req, socket, head)),
  };
}
