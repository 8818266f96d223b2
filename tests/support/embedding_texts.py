"""Short WhatsApp-like messages in Portuguese and English, for embedding tests and benches."""

from __future__ import annotations

PORTUGUESE: list[str] = [
    "oi",
    "olá, tudo bem?",
    "bom dia!",
    "obrigado!",
    "sim",
    "não, obrigada",
    "quero cancelar meu pedido",
    "quero cancelar meu pedido número 48213, chegou errado",
    "qual o horário de funcionamento da loja amanhã?",
    "meu cartão foi recusado na compra de ontem, o que faço?",
    "preciso falar com um atendente humano agora",
    "a entrega está atrasada há três dias",
    "vocês entregam em Belo Horizonte?",
    "quanto custa o frete para o Rio de Janeiro?",
    "esqueci minha senha e não consigo entrar no aplicativo",
    "pode me mandar a segunda via do boleto?",
    "o produto veio quebrado, quero trocar",
    "aceitam pix?",
    "qual o prazo de devolução?",
    "meu pedido ainda não saiu para entrega, por quê?",
    "gostaria de mudar o endereço de entrega",
    "tem esse tênis no tamanho 42?",
    "a promoção ainda está valendo?",
    "vou passar aí na loja às 15h",
    "não recebi o código de verificação",
    "como faço para parcelar em 10 vezes sem juros?",
    "o atendimento de vocês é excelente, parabéns",
    "estou muito insatisfeito com o serviço",
    "pode repetir, por favor? não entendi",
    "ok, fico aguardando o retorno",
]

ENGLISH: list[str] = [
    "hi",
    "hello, how are you?",
    "thanks!",
    "yes please",
    "no",
    "I want to cancel my order",
    "what time does the store open tomorrow morning?",
    "my card was declined yesterday, what should I do?",
    "can I talk to a real person?",
    "the delivery is three days late",
    "do you ship to Canada?",
    "how much is shipping to New York?",
    "I forgot my password and can't log in to the app",
    "please send me a copy of the invoice",
    "the item arrived broken and I want a replacement",
    "do you accept PayPal?",
    "what is your return policy?",
    "I'd like to change my delivery address",
    "is this jacket available in size medium?",
    "is the sale still on?",
    "I didn't get the verification code",
    "the weather is lovely today",
    "great service, thank you so much",
    "I am very unhappy with how this was handled",
    "sorry, could you say that again?",
    "ok, I'll wait for your reply",
    "where is my package? the tracking number doesn't work",
    "can I pay in installments?",
    "the app keeps crashing when I open the cart",
    "please unsubscribe me from these messages",
]

ALL: list[str] = PORTUGUESE + ENGLISH


def corpus(n: int) -> list[str]:
    """`n` texts cycling through ALL, each made distinct by a trailing counter."""
    return [f"{ALL[i % len(ALL)]} {i // len(ALL)}" if i >= len(ALL) else ALL[i] for i in range(n)]


# Translations, for measuring how the model relates the two languages.
TRANSLATIONS: list[tuple[str, str]] = [
    ("quero cancelar meu pedido", "I want to cancel my order"),
    ("qual o horário de funcionamento da loja amanhã?", "what time does the store open tomorrow?"),
    ("meu cartão foi recusado", "my card was declined"),
    ("a entrega está atrasada há três dias", "the delivery is three days late"),
    ("esqueci minha senha", "I forgot my password"),
    ("o produto veio quebrado", "the product arrived broken"),
    ("obrigado pela ajuda", "thanks for the help"),
    ("posso falar com um atendente?", "can I talk to an agent?"),
]
