"""Services: one module per capability. Functions take ``(session, actor, ...)``,
apply the domain rules and never commit; the adapter's unit of work does."""
