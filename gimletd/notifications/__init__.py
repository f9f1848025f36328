"""Notifications: every release, rollback, delete, cleanup and Flux result, announced.

The flow (invariant I6):

1. When a GitOps write is recorded (or an event fails to plan, or Flux reports
   on a commit), a `Notice` saying what happened is stored in the same
   transaction, with one pending delivery per target that takes it
   (`targets.targets_for`). So nothing is lost between the write and the
   message, and a release never waits on a chat service.
2. A worker task sends each delivery: `targets.request_for` builds the HTTP
   request of the target's provider module (`slack`, `discord`, `github`,
   `webhook`), `delivery.send` sends it, and the provider's `judge` reads the
   reply as sent, retry (honouring `Retry-After`) or give up.
3. The outcome of each delivery shows on the event (`GET /api/event`).

Everything here but `delivery.send` is pure.
"""
