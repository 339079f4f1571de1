"""`hirestream`, the operator's command line: dead letters (`dlq list|show|redrive`), the
outboxes (`outbox status`), consumer lag (`lag`) and the postings read model
(`read-model rebuild`). It reads the services' connection settings (`ConnectionSettings`) and
needs none of their secrets; `hirestream --help` says the rest."""
