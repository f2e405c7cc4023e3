module enclave.example/chat

go 1.19
