package verifiers_test

import "crypto/rsa"

var rsaPSSOptions20 = rsa.PSSOptions{SaltLength: 20}
