-- PostgreSQL only (partial indexes on ey_inbox); nothing to change here.
SELECT 1;
