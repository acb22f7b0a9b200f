-- PostgreSQL only (fillfactor of ey_outbox); nothing to change here.
SELECT 1;
