// Package iso7816 holds the smart-card rules that a reader in the middle
// must keep (ISO/IEC 7816-3 and -4): the structure of an ATR (ParseATR),
// offering T=0 for a card that offers only T=1 (AddT0), and the T=0 answer
// rules for such a card together with long responses through GET RESPONSE
// (Responder).
//
// iso7816 imports nothing of cardshare's and never logs (responses carry
// card data).
package iso7816
