"""Fit benchmark: judge a generated dataset from its text alone, with hand-written Korean lexicons.

Usage: python bench/fit_bench.py DATASET.json [--json OUT.json] [--examples N]

The judge never looks at the generator or its pools. Every lexicon below was written from ordinary Korean usage,
so every measure is approximate:

- Words are matched as regular expressions over the raw text, with a "word start" guard (no Hangul syllable right
  before) and, for short nouns such as 산, 차, 아이, 논, an explicit list of the particles allowed after them. A
  spelling the lexicon does not know goes unseen (a miss), and an unusual idiom may still be caught (a false alarm).
- "Presumes" and "needs a place" are decided per line: a line that names a child, a pet, a car, a yard, the sea,
  a mountain, a subway or a commute is taken to rely on it unless a conditional ("~이 있다면", "~를 키운다면")
  is attached to the word. Trips ("산에 갈 때") still count as needing the place.
- Feedback coverage matches challenge titles by substring (spaces ignored, the last syllable of the title may be
  conjugated away); aggregate phrases such as "나머지", "모두", "두 개" are taken to cover every unnamed item of the week.
- Free-text fit picks ONE main need per message by a fixed priority and judges each line with the lexicon of
  that need; for needs that forbid rather than require something (tired, busy, no money, at home) a line passes
  unless it shows the forbidden thing.
- Sino-Korean numbers are only counted before a unit (도, 분, 층, 등급, ...); "이 분", "이 시간" (this ...) and
  "일 년", "만 원", "천 원" (ordinary spelling) are not counted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------------------------------------
# Lexicons. Each is a regular expression (or a dict of them). WS = word start: no Hangul syllable right before.
# --------------------------------------------------------------------------------------------------------------------

WS = r"(?<![가-힣])"
# Particles / short endings that may follow a bare noun; used after short, ambiguous nouns (산, 차, 논 ...).
PARTICLE = r"(?:에서|에게|한테|으로|이나|이랑|하고|부터|까지|처럼|마다|에|로|을|를|이|가|은|는|도|과|와|랑|만|의|나)?"
END = r"(?![가-힣])"

LOCATIONS = ("도시", "바닷가", "산", "농촌")
WORK_TYPES = ("사무직", "현장직", "영업직", "재택근무")
CATEGORIES = ("제로웨이스트", "플로깅", "탄소발자국", "에너지 절약", "업사이클", "문화 공유", "디지털 탄소", "비건")

# --- a. presumption -------------------------------------------------------------------------------------------------

# A child of one's own: 아이(들) with particles (not 아이디어/아이스/아이템/아이콘), 자녀, 아기 (not 아기자기), school runs.
CHILD = (
    rf"{WS}아이(?:들)?(?=$|[^가-힣]|와|랑|하고|가|를|에게|한테|의|도|는|은|과|이랑|방|옷|책)|자녀|{WS}아기(?!자기)|어린이|유치원"
    rf"|초등학생|초등학교|{WS}아들{PARTICLE}{END}|{WS}딸(?:아이|{PARTICLE}){END}|{WS}애들|육아|기저귀|이유식|등굣길"
    rf"|등교|하교|등원|하원|놀이터|키즈"
)
# A pet: 반려견/반려묘/반려동물 (not 반려식물), 강아지, 고양이 (not 길고양이 - a stray is not a pet), dog-walking gear.
PET = rf"반려(?:견|묘|동물|인)|강아지|(?<!길)고양이|댕댕이|애견|애묘|{WS}펫(?![트])|산책시키|배변 ?봉투|목줄"
# Tea contexts that make a bare 차 mean tea, and set phrases where 차 is not one's own car.
NOT_CAR = (
    rf"(?:따뜻한|뜨거운|시원한|차가운|따끈한|허브|보리|우린|좋아하는|마실|마시는|녹|홍|유자|생강|꽃) ?차{END}|차 ?(?:한 ?잔|를 마시"
    rf"|를 우려|를 내려|를 끓|를 타서|마시|우려|티백|잎|를 담)|차 없는 (?:거리|날)|차를? 타는 (?:거리|횟수|시간)|(?:운전"
    rf"|주차) ?(?:피로|걱정|스트레스)"
)
# One's own car: bare 차 with particles (not 녹차/차이/차가운/차례/차분), 자가용, 운전 (not a bus driver), parking, fuel.
CAR = (
    rf"{WS}차(?:로|를|에|에서|가|는|도|의|랑|와|나)?{END}|자동차|자가용|승용차|전기차|(?<!버스 )운전(?!기사)|주차(?!장)|공회전"
    rf"|주유|세차|트렁크|카풀|(?<!헌 )(?<!폐)(?<!낡은 )타이어|블랙박스"
)
# A yard, balcony or private garden (not a shared allotment: 공동/주말/도시 텃밭).
YARD = rf"마당|베란다|발코니|테라스|{WS}정원(?!사)|(?<!공동 )(?<!주말 )(?<!도시 )(?<!공동)텃밭(?! ?분양)"
# The two kinds of space YARD joins, for a request that names one of them.
VERANDA = r"베란다|발코니"
YARD_ONLY = rf"마당|{WS}정원(?!사)|(?<!공동 )(?<!주말 )(?<!도시 )(?<!공동)텃밭(?! ?분양)"
# Conditional wording attached to the presumed thing: it licenses the whole line.
CONDITIONAL = (
    r"^.{0,14}?(?:있다면|있으면|있으시면|있는 (?:집|분|가정|경우)|키운다면|키우면|키우신다면|키우시면|키우고 있다면"
    r"|키우는 (?:집|분|가정)|탄다면|타신다면|몬다면|운전한다면|운전하신다면|운전하는 분|이라면|라면|한다면|쓴다면)"
)
# An alternative offered right next to the presumed thing ("마당이나 동네 공터", "화분이나 텃밭"): not a presumption.
ALTERNATIVE_AFTER = r"^(?:이나|나|또는|혹은) "
ALTERNATIVE_BEFORE = r"(?:이나|나|또는|혹은) $"
PRESUMED: dict[str, str] = {"child": CHILD, "pet": PET, "car": CAR, "yard": YARD}
# What a free-text message must mention to license each presumed thing.
LICENSE: dict[str, str] = {
    "child": rf"{CHILD}|{WS}애(?:랑|와|가|를|하고){END}|우리 애|딸이",
    "pet": rf"{PET}|{WS}개(?:랑|와|를|하고){END}",
    "car": rf"{CAR}|드라이브",
    "yard": rf"{YARD}|주택|시골집|옥상",
}

# --- b. place misfits -----------------------------------------------------------------------------------------------

# Needs the sea or the beach (the sea named as where one is or goes, not as where plastic ends up).
BEACH = (
    r"바닷가|해변|해수욕장|백사장|모래사장|갯벌|방파제|갯바위|항구|포구|어촌|해안|바닷바람|파도|해녀|어시장|수산시장"
    r"|비치 ?클린|바다(?:에서|에 가서|에 갈 때|에 가면|에 놀러|로 놀러|낚시|수영| 산책| 근처| 마을|를 보며|가 보이)"
)
# Needs a mountain: hiking, mountain paths, valleys (not 산책/생산/계산/우산/부산/산소, nor 산 "bought" as in "시장에서 산 미역").
MOUNTAIN = (
    rf"등산|하산|산행|산길|산속|산골|산자락|산기슭|산 ?정상|뒷산|앞산|약수터|계곡|휴양림|산림욕|산나물"
    rf"|{WS}산(?:(?:에서|으로|에|을|이나|이|과|마다){END}| 아래| 입구| 근처| 위{END})"
)
# Needs a subway or transport that only cities have.
SUBWAY = rf"지하철|전철|도시철도|경전철|광역버스|따릉이|공유 ?자전거|공유 ?킥보드|전동 ?킥보드|{WS}환승"
# Needs a commute (going to or from a workplace; a bare "퇴근 후" is just "after work").
COMMUTE = r"출퇴근|출근|통근|퇴근길|퇴근 ?길|퇴근할 때|퇴근하는 길|퇴근하면서|(?:회사|직장|사무실|일터)까지"
PLACE_NEEDS: dict[str, str] = {"beach": BEACH, "mountain": MOUNTAIN, "subway": SUBWAY, "commute": COMMUTE}
# What a free-text message must mention to license each place need (trips license the sea and the mountains).
PLACE_LICENSE: dict[str, str] = {
    "beach": rf"{BEACH}|바다|휴가|여행|피서|놀러",
    "mountain": rf"{MOUNTAIN}|캠핑|휴가|여행|피서|놀러",
    "subway": rf"{SUBWAY}|대중교통|버스|도시|도심|서울|출퇴근|출근|퇴근|통근",
    "commute": rf"{COMMUTE}|퇴근|타고 다니|회사|직장|사무실|일터|직장인|회사원|동료|상사|팀원|회의|야근",
}
# A message that says it works from home (then commute lines misfit even if work is mentioned).
WORKS_FROM_HOME = r"재택"

# --- c. seasons -----------------------------------------------------------------------------------------------------

# A line about summer or heat.
SUMMER = rf"여름|더위|폭염|열대야|더운 날|더울 때|{WS}덥|에어컨|선풍기|냉방|물놀이|해수욕|피서|쿨매트|부채질"
# Seasonal words used for something else: a fan drying laundry on a rainy day is not summer.
NOT_SEASONAL = r"빨래[^.]*선풍기|선풍기로 빨래"
# A line about winter, cold or heating (눈 only as snow, never as eye).
WINTER = (
    rf"겨울|추위|한파|추운 날|추울 때|{WS}춥|(?<!온실 )(?<!냉)난방|보일러|내복|히터|전기장판|온수 ?매트|문풍지|뽁뽁이|핫팩|눈사람|눈 오는"
    rf"|눈이 오|눈이 내리|눈 내리|폭설|제설|목도리|털모자|동파|온풍기|김장"
)
# A message that speaks of heat or summer.
MSG_HOT = rf"더워|{WS}덥|더운|더위|여름|폭염|무더|찜통|땀이|에어컨|열대야|햇볕이 너무"
# A message that speaks of cold, winter or snow.
MSG_COLD = rf"추워|{WS}춥|추운|추위|겨울|한파|쌀쌀|눈이 (?:와|오|내)|눈 (?:와|오|내리)|폭설|얼 것|꽁꽁|영하|찬 바람"
# A message that speaks of rain.
MSG_RAIN = rf"{WS}비(?: 오| 와|가|옴| 소식| 내리| 때문에| 온)|빗|장마|소나기|우산|궂은"
# The monsoon specifically (a summer season: a winter answer contradicts it).
MSG_MONSOON = r"장마"
# A line that needs sunshine or dry weather (contradicts a rainy message).
NEEDS_SUN = r"햇볕에|햇빛에|햇살에|볕에|맑은 날|빨래를 밖에|바깥에 널"

# --- d. recommend sentence support ----------------------------------------------------------------------------------

# How a first line names each location or work type (the literal word or a clear synonym).
NAMES: dict[str, str] = {
    "도시": rf"도시|도심|{WS}시내",
    "바닷가": rf"바닷가|{WS}바다|해변|해안|갯마을|바닷마을",
    "산": rf"산골|산마을|산자락|산속|{WS}산(?:에서|에|과|이|을| 아래| 가까이| 근처| 마을| 동네| 곁)?{END}",
    "농촌": r"농촌|시골|농가|농사",
    "사무직": r"사무직|사무실|회사원|오피스",
    "현장직": r"현장직|현장",
    "영업직": r"영업직|영업|외근",
    "재택근무": r"재택|집에서 일|집에서 근무",
}
# What counts as showing something specific to each location or work type in the three lines.
EVIDENCE: dict[str, str] = {
    "도시": (
        rf"지하철|전철|{WS}버스|대중교통|아파트|엘리베이터|도심|빌딩|공유 ?자전거|따릉이|킥보드|편의점|카페|공원|배달|횡단보도|상가|백화점|대형 ?마트"
        rf"|골목|도시|시내|택시|주민센터|분리수거장|경비실|관리사무소|단지|정류장"
    ),
    "바닷가": rf"{BEACH}|{WS}바다|해양|물고기|조개|어부|수산|생선|횟집|모래|낚시|폐그물|부표|스티로폼 부표",
    "산": rf"{MOUNTAIN}|{WS}숲|나무|둘레길|캠핑|도토리|등산객|산새|숲길|임도",
    "농촌": (
        rf"농촌|시골|{WS}논(?:에|에서|밭|두렁|길|물)?{END}|{WS}밭(?:에|에서|일|두렁|고랑)?{END}|텃밭|농사|농작물|농산물|작물|퇴비"
        rf"|거름|비료|농기계|경운기|트랙터|비닐하우스|과수원|수확|모내기|모종|씨앗|로컬 ?푸드|직거래|장날|오일장|마을회관|어르신|볏짚|농약|영농|마당|들판"
        rf"|방앗간|이웃집|마을"
    ),
    "사무직": (
        rf"사무실|회의|모니터|컴퓨터|프린터|인쇄|출력|복사|이면지|탕비실|휴게실|책상|동료|점심시간|회사|메일|결재|서류|야근|출근|퇴근|사내|업무|엑셀|문서"
        rf"|종이컵|명함|노트북|{WS}(?:PC|pc){END}|팀원|상사|부서"
    ),
    "현장직": (
        r"현장|작업|안전모|안전화|장갑|공구|자재|공사|쉬는 시간|휴식 시간|동료|장비|트럭|창고|교대|도시락|물통|새참"
        r"|공장|건설|배송|팔레트|출근|퇴근|땀|일터|근무"
    ),
    "영업직": (
        rf"영업|거래처|외근|고객|미팅|출장|이동 중|이동할 때|이동하는|이동 시간|차량|명함|상담|방문|카탈로그|견본|운전|점심 약속|발품|출근|퇴근|회사|업무"
        rf"|{WS}차(?:로|를|에|에서|가|는|안)?{END}"
    ),
    "재택근무": (
        r"재택|집에서 일|집에서 근무|화상 ?회의|온라인 회의|홈 ?오피스|업무|일하는|근무|책상|모니터|컴퓨터|노트북|메일"
        r"|출근하지|출퇴근(?: ?시간| ?길)?(?:이|을)? ?(?:없|안|아낀|줄)|점심"
    ),
}

# --- e. feedback coverage -------------------------------------------------------------------------------------------

# Phrases that plausibly cover unnamed challenges of the week ("우리 모두", "다 함께" are not coverage).
AGGREGATE = (
    rf"나머지|다른 챌린지|다른 것|다른 도전|남은 (?:챌린지|것|도전)|{WS}(?:두|세|네|다섯) ?(?:개|가지)|(?:모두|전부|다) (?:해냈"
    rf"|성공|잘|챙겼|지켰|완료|끝냈|마쳤|달성|놓쳤|못 했|쉬어 갔)|(?:챌린지|도전|것)(?:을|를|은|는|이|가|들)? (?:모두|전부)|모든 챌린지"
    rf"|챌린지들|도전들|그룹 챌린지들|여러 (?:챌린지|가지|도전)|몇몇|이것저것|하나하나|골고루|빠짐없이"
)

# --- f. free-text fit -----------------------------------------------------------------------------------------------

# Outdoor activities (a line that needs going out).
OUTDOOR = (
    rf"밖에서|바깥|야외|공원|산책|걷기|걸어|{WS}길(?:에서|을|가)|거리|플로깅|줍깅|줍기|자전거|등산|{WS}버스|지하철|출근|퇴근|시장|마트|가게"
    rf"|카페|장 ?보|장바구니|캠핑|해변|바닷가|하천|운동장|놀이터|도서관|정류장|외출|나들이|나갈 때|나설 때|텃밭|마당|{WS}동네|{WS}숲|물가|쉼터"
    rf"|벤치|골목|길가|논둑|모래|나무 .{{0,6}}심|{BEACH}|{MOUNTAIN}"
)
# Inside the home.
INDOOR = (
    rf"{WS}집(?!회)|실내|{WS}방(?:에|에서|을|안|마다|의)?{END}|거실|부엌|주방|냉장고|세탁기|욕실|화장실|창문|전등|콘센트|플러그|멀티탭"
    rf"|이불|옷장|서랍|냉동실|싱크대|가전|보일러|에어컨|선풍기|식탁|베란다|커튼"
)
# A line that meets a "hot" message.
HOT_FIT = rf"{SUMMER}|시원|그늘|얼음|냉장|커튼|햇볕|블라인드|찬물|물병|텀블러"
# A line that meets a "cold" message.
COLD_FIT = rf"{WINTER}|따뜻|담요|양말|보온|단열|온도|이불|뜨끈|털|외풍|창문 틈"
# A line that meets a rainy message (rain gear or something to do indoors).
RAIN_FIT = rf"{INDOOR}|우산|빗물|장마|{WS}비(?: 오| 올|가|옷)|우비|장화|빗길"
# A line that costs money (fails a "no money" message).
COSTS_MONEY = r"사기|사서|사 두|살 때 |구매|구입|장만|주문|설치|교체|바꾸기|바꾸면|새로 사|마련|수리|렌탈|가입"
# A line that takes long (fails a "busy / short time" message).
TAKES_LONG = (
    r"캠핑|여행|등산|하루 종일|주말 내내|한나절|텃밭|만들기|바느질|꿰매|수업|강좌|공방|모임|상영회|봉사|나들이|관람"
)
# A line that takes effort (fails a "tired" message).
EFFORTFUL = (
    r"등산|달리기|달리며|조깅|플로깅|줍깅|자전거|만들기|바느질|꿰매|대청소|텃밭|운동|계단|걸어서|걸어가기|걷기|산책"
)
# Doing it together (meets a "with friends / family / coworkers" message).
TOGETHER = rf"함께|같이|친구|가족|동료|이웃|모임|나눠|나누|모여|{WS}팀|다 같이|부모님|아이|팀원|서로|상영회|모두"
# Doing it with a child (meets a "with a child" message).
WITH_CHILD = rf"{CHILD}|가족|함께|같이|그림책|놀이"
# Doing it with a pet (meets a "with a pet" message).
WITH_PET = rf"{PET}|산책|사료|간식|털|배변"
# Words of each category (a message naming the topic wants lines of that topic).
CATEGORY_WORDS: dict[str, str] = {
    "플로깅": r"플로깅|줍깅|줍기|주워|주우|주운|쓰레기 ?봉투|집게|치우|치워|거두|거둬|쓰레기 .{0,6}찾",
    "비건": (
        r"비건|채식|채소|식물성|두부|콩|나물|고기 없|고기 대신|육류|우유 대신|두유|귀리|오트|버섯|과일|곡물|샐러드|비빔밥"
        r"|쌈|달걀 없이|달걀 대신|후무스|해조류|미역|김밥"
    ),
    "업사이클": (
        rf"업사이클|리폼|만들기|만들어|만들면|다시 쓰|새로 태어|다시 태어|재활용|되살|꿰매|고쳐|수선|{WS}헌 |안 쓰는|낡은|버려질|(?:으로"
        rf"|로) (?:쓰|써|만들|다시|싸|포장)|쓸 수 있"
    ),
    "제로웨이스트": (
        rf"제로웨이스트|일회용|다회용|텀블러|장바구니|용기|리필|포장|비닐|플라스틱|손수건|쓰레기|빨대|재사용|고체|천 주머니|분리배출|분리수거|음식물|물병"
        rf"|페트병|생수|도시락|머그|수저|{WS}컵|종이|소분|버리|버려|낭비|남은 음식|행주"
    ),
    "탄소발자국": (
        rf"탄소|배출|연료|기름|연비|트럭|오토바이|운송|실어|먼 길|이동|{WS}차(?:로|를|가|는)?{END}|비행기|기차|자전거|걷|걸어|대중교통|버스"
        rf"|지하철|로컬|제철|국산|우리 지역|가까운|택배|배송|소고기|고기|육류"
    ),
    "에너지 절약": (
        rf"전기|에너지|전력|대기 ?전력|플러그|콘센트|멀티탭|전등|조명|{WS}불(?:을|은)? ?(?:끄|꺼|켜|켤)|난방|냉방|에어컨|보일러|온도|절전|절약"
        rf"|엘이디|LED|가전|세탁기|냉장고|온수|가스|드라이기|밥솥|충전기|햇빛|커튼|건조기|전자레인지"
    ),
    "문화 공유": (
        rf"공유|나눔|나누|나눠|빌려|대여|도서관|중고|교환|바꿔|기부|물려|함께|같이|모임|소개|추천|알리|이야기|상영|{WS}책|영화|다큐|전시|공연|강연"
        rf"|팟캐스트|퀴즈|가족|이웃|친구|게시판|올리|글"
    ),
    "디지털 탄소": (
        rf"메일|클라우드|데이터|스트리밍|화질|휴대폰|스마트폰|{WS}앱|알림|파일|사진|동영상|영상|화면|저장|검색|구독|디지털|충전|와이파이|인터넷|백업"
        rf"|브라우저|{WS}탭|컴퓨터|메모리|온라인|노트북|모니터"
    ),
}
# How a message names each category topic (checked in this order: 디지털 탄소 before the broader 탄소).
TOPIC_IN_MESSAGE: dict[str, str] = {
    "디지털 탄소": r"디지털|휴대폰|스마트폰|클라우드|메일|파일|데이터|스트리밍",
    "플로깅": r"플로깅|줍깅|쓰레기 ?(?:줍|주우|주워)|주우면서|줍기",
    "비건": r"비건|채식|고기(?: 좀|를)? ?(?:줄|안 먹)",
    "업사이클": r"업사이클|만들 만한|만들 수 있|만들어 보|리폼|헌 옷|안 쓰는 물건|페트병으로|버리기 아까운",
    "제로웨이스트": r"제로웨이스트|쓰레기(?:가| 줄|도 줄| 많)|일회용|비닐봉지|플라스틱|배달 음식|포장",
    "탄소발자국": r"탄소|기후 위기|차를 좀 덜",
    "에너지 절약": r"전기|에너지|관리비|전력|난방비",
    "문화 공유": r"문화 공유|책이나 영화|다큐|알리고 싶|이야기 나눌|인스타|공유",
}
# Message lexicons for the other needs.
MSG_HOME = r"안 나가고|집에서|집에만|집콕|실내|방에서|이불 밖|나가기 싫|밖에 못|재택|살림|부엌|요리"
MSG_OUTDOOR = (
    r"공원에서|바람 좀 쐬|바다 보러|밖에서|야외|바깥|산책하면서|산책하는|나가서|나들이|소풍|날씨 좋|하늘 .{0,3}맑|등산"
)
# A message about the commute.
MSG_COMMUTE = r"출근|퇴근|출퇴근|통근"
# A line one can do on the way to or from work.
ON_THE_WAY = (
    r"출근|퇴근|통근|지하철|버스|대중교통|정거장|가는 길|오는 길|오가는|이동|걸어|걷|자전거|텀블러|도시락|사무실|회사|일터"
    r"|오디오북|팟캐스트"
)
# A message about grocery shopping.
MSG_SHOPPING = r"장볼|장보|장 볼|마트|시장 갈"
# A line about shopping.
SHOPPING = r"장바구니|장 ?보|장을 보|마트|시장|포장|용기|비닐|계산|고르|골라|담아|사 오|살 때|구매|낱개|반찬가게"
# A message that wants exercise.
MSG_EXERCISE = r"운동|살이 쪄|움직여|조깅|달리는|헬스|걷기"
# A line that is exercise.
EXERCISE = r"걷|걸어|계단|달리|조깅|자전거|운동|플로깅|줍깅|줍기|산책|등산|만 보"
MSG_FREE = r"돈 안|돈을 (?:좀 )?아껴|돈 없|무료|공짜|비용|생활비|월급날|통장|아끼면서|관리비"
MSG_BUSY = rf"바빠|바쁜|시간이 없|시간 없|시간이 거의 없|짬|잠깐|틈틈이|짧게|금방|{WS}(?:오|5) ?분|정신없"
MSG_TIRED = (
    r"피곤|지쳐|지쳤|힘들|귀찮|기운|힘이 없|힘 안 드는|녹초|쉬고 싶|무기력|천근만근|의욕이|처지|아무것도 하기 싫"
    r"|움직이기 싫|가볍게|쉬운"
)
# A message that wants to do it alone (checked before MSG_SOCIAL: "같이 하긴 부담스러워요" is not social).
MSG_ALONE = r"혼자|같이 하긴 .{0,4}부담|자취"
# A title that needs other people (fails an "alone" message).
NEEDS_OTHERS = r"함께|같이|친구|가족|동료|이웃|모임|팀원|아이와|상영회|나누기|나눔|모여"
MSG_SOCIAL = r"동아리|사람들이랑|친구|가족|동료|팀원|팀끼리|부모님|엄마|아빠|같이|함께|다 같이|이웃|사람 찾"
# "X가 뭐예요?"-like questions; group 1 is the term asked about.
QUESTION = re.compile(
    r"((?:[가-힣A-Za-z]+ )?[가-힣A-Za-z]+?)(?:이|가|은|는|이란|란|라는 ?게|이라는 ?게)? ?(?:뭐예요|뭐에요|뭐야|뭔가요|뭔지|무엇인가요|무슨 뜻|뭘까)"
)
# A definition-like answer: "X은/는 … 이에요/예요/말해요/뜻해요/거예요".
DEFINITION_END = r"(?:이에요|예요|말해요|뜻해요|거예요|걸 말해요|일이에요|활동이에요|방법이에요|뜻이에요|거래요|이래요)"

# --- g. spelled-out Sino-Korean numbers -----------------------------------------------------------------------------

SINO_DIGIT = "일이삼사오육칠팔구"
# Units a Sino-Korean number is read with (도, 분, 층 ...), then a particle or a word end.
SINO_UNIT = r"(?:도|분|초|층|등급|시간|퍼센트|프로|킬로그램|킬로미터|킬로|미터|센티미터|센티|그램|리터|와트|개월|주일|주|일|단계|년|호)"
UNIT_END = rf"(?=$|[^가-힣]|{PARTICLE[3:-2]}|씩|쯤|정도|동안|간|짜리|째|이상|이하|안|내|이면|이나|으로)"
# Multi-syllable numbers (이십육, 삼십, 십오 ...) with or without a space before the unit.
SINO_MULTI = rf"{WS}[{SINO_DIGIT}]?(?:십|백|천)[{SINO_DIGIT}]?(?:십)?[{SINO_DIGIT}]? ?{SINO_UNIT}{UNIT_END}"
# Single digits only with a space, and not 이 ("this") nor the ordinary 일 년 / 일주일.
SINO_SINGLE = rf"{WS}(?:일(?! 년)(?! 주일)|삼|사|오|육|칠|팔|구) {SINO_UNIT}{UNIT_END}"
SINO_NUMBER = rf"{SINO_MULTI}|{SINO_SINGLE}"

# --------------------------------------------------------------------------------------------------------------------

_CACHE: dict[str, re.Pattern[str]] = {}


def rx(pattern: str) -> re.Pattern[str]:
    """Compile a lexicon pattern once."""
    if pattern not in _CACHE:
        _CACHE[pattern] = re.compile(pattern)
    return _CACHE[pattern]


def find(pattern: str, text: str) -> str | None:
    """The first lexicon hit in text, or None."""
    match = rx(pattern).search(text)
    return match.group(0) if match else None


@dataclass
class Challenge:
    title: str
    description: str

    @property
    def text(self) -> str:
        return f"{self.title}: {self.description}"


@dataclass
class Record:
    index: int
    task: str  # base_info | free_text | feedback
    input: str
    output: str
    recommend: str = ""
    challenges: list[Challenge] = field(default_factory=list)
    location: str = ""
    work_type: str = ""
    category: str = ""


@dataclass
class Offense:
    index: int
    reason: str
    input: str
    text: str


@dataclass
class Measure:
    key: str
    name: str
    count: int
    denominator: int
    target: str = "report"
    passed: bool | None = None
    offenders: list[Offense] = field(default_factory=list)
    value: float | None = None  # for measures that are not a share (counts, means)

    @property
    def share(self) -> float:
        return self.count / self.denominator if self.denominator else 0.0


BASE_INPUT = re.compile(
    r"^(" + "|".join(LOCATIONS) + r"), (" + "|".join(WORK_TYPES) + r"), (" + "|".join(CATEGORIES) + r")$"
)


def parse(index: int, raw: dict[str, str]) -> Record:
    text_in, out = raw["input"].strip(), raw["output"].strip()
    base = BASE_INPUT.match(text_in)
    if text_in.startswith("{"):
        return Record(index, "feedback", text_in, out)
    record = Record(index, "base_info" if base else "free_text", text_in, out)
    if base:
        record.location, record.work_type, record.category = base.groups()
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if lines:
        record.recommend = lines[0]
    for line in lines[1:]:
        title, _, description = line.partition(":")
        record.challenges.append(Challenge(title.strip(), description.strip()))
    return record


def load(path: Path) -> list[Record]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [parse(i, raw) for i, raw in enumerate(data)]


# --- a ----------------------------------------------------------------------------------------------------------------


def offered_as_alternative(text: str, hit: re.Match[str]) -> bool:
    """The word is one of two offered ("마당이나 베란다"), so the line does not rely on it."""
    return bool(rx(ALTERNATIVE_AFTER).search(text[hit.end() :]) or rx(ALTERNATIVE_BEFORE).search(text[: hit.start()]))


def presumed(text: str) -> list[tuple[str, str]]:
    """(kind, word) for each presumed thing in a line; a conditional attached to any mention licenses the kind."""
    found = []
    masked = rx(NOT_CAR).sub(lambda m: "□" * len(m.group(0)), text)
    for kind, pattern in PRESUMED.items():
        hits = list(rx(pattern).finditer(masked if kind == "car" else text))
        if not hits:
            continue
        if any(rx(CONDITIONAL).search(text[hit.end() : hit.end() + 20]) for hit in hits):
            continue
        if kind == "yard" and all(offered_as_alternative(text, hit) for hit in hits):
            continue
        found.append((kind, hits[0].group(0)))
    return found


def measure_presumption(records: list[Record], task: str) -> Measure:
    measure = Measure(f"a.presumption.{task}", f"presumption ({task} lines)", 0, 0, "<= 1%")
    for record in records:
        if record.task != task:
            continue
        for challenge in record.challenges:
            measure.denominator += 1
            kinds = presumed(challenge.text)
            if task == "free_text":
                kinds = [(k, w) for k, w in kinds if not find(LICENSE[k], record.input)]
            if kinds:
                measure.count += 1
                why = ", ".join(f"{k}:{w}" for k, w in kinds)
                measure.offenders.append(Offense(record.index, why, record.input, challenge.text))
    measure.passed = measure.share <= 0.01
    return measure


# --- b ----------------------------------------------------------------------------------------------------------------


def alternatives(text: str, start: int, end: int) -> list[str] | None:
    """The words offered as alternatives to the hit ("공원이나 뒷산", "버스나 지하철역이나"), or None if there are none."""
    token_start = text.rfind(" ", 0, start) + 1
    token_end = text.find(" ", end)
    token_end = len(text) if token_end < 0 else token_end
    before = text[:token_start].split()
    after = text[token_end:].split()
    found = []
    if before and re.search(r"(?:이나|나|또는|혹은)$", before[-1]):
        found.append(before[-2] if before[-1] in ("또는", "혹은") and len(before) >= 2 else before[-1])
    if after and re.search(r"(?:이나|나)$", text[token_start:token_end]):
        found.append(after[0])
    return found or None


def need_fits(record: Record, need: str) -> bool:
    """Whether the record's input fits a place need."""
    if record.task == "base_info":
        return {
            "beach": record.location == "바닷가",
            "mountain": record.location == "산",
            "subway": record.location == "도시",
            "commute": record.work_type != "재택근무",
        }[need]
    if need == "commute" and find(WORKS_FROM_HOME, record.input):
        return False
    return bool(find(PLACE_LICENSE[need], record.input))


def place_misfits(record: Record, text: str) -> list[tuple[str, str]]:
    """(need, word) for each place need of a line that the record's input does not fit.

    A need offered with an alternative ("동네 공원이나 뒷산") fits when an alternative needs no place, or a place
    the input fits."""
    misfits = []
    for need, pattern in PLACE_NEEDS.items():
        hits = list(rx(pattern).finditer(text))
        if not hits or need_fits(record, need):
            continue
        optional = True
        for hit in hits:
            options = alternatives(text, hit.start(), hit.end())
            if not options:
                optional = False
                break
            other_needs = [n for option in options for n, p in PLACE_NEEDS.items() if find(p, option)]
            if other_needs and not any(need_fits(record, n) for n in other_needs if n != need):
                optional = False
                break
        if not optional:
            misfits.append((need, hits[0].group(0)))
    return misfits


def measure_places(records: list[Record], task: str) -> Measure:
    target, limit = ("<= 0.2%", 0.002) if task == "base_info" else ("<= 1%", 0.01)
    measure = Measure(f"b.place.{task}", f"place misfits ({task} lines)", 0, 0, target)
    for record in records:
        if record.task != task:
            continue
        for challenge in record.challenges:
            measure.denominator += 1
            misfits = place_misfits(record, challenge.text)
            if misfits:
                measure.count += 1
                why = ", ".join(f"{k}:{w}" for k, w in misfits)
                measure.offenders.append(Offense(record.index, why, record.input, challenge.text))
    measure.passed = measure.share <= limit
    return measure


def bound_to(pattern: str, text: str) -> str | None:
    """The first word of ``pattern`` the line relies on: not offered as an alternative ("마당이나 베란다") and not
    under a conditional ("베란다가 있다면")."""
    for hit in rx(pattern).finditer(text):
        if offered_as_alternative(text, hit) or rx(CONDITIONAL).search(text[hit.end() : hit.end() + 20]):
            continue
        return hit.group(0)
    return None


def measure_yard_or_veranda(records: list[Record]) -> Measure:
    """A message about a veranda answered with a line that needs a yard, or the other way round (one is no licence
    for the other: a flat has no yard, and a house with a yard need not have a veranda)."""
    measure = Measure("b.yard_veranda", "free_text naming a veranda or a yard: a line needs the other", 0, 0)
    for record in records:
        veranda, yard = find(VERANDA, record.input), find(YARD_ONLY, record.input)
        if record.task != "free_text" or bool(veranda) == bool(yard):
            continue
        measure.denominator += 1
        other = YARD_ONLY if veranda else VERANDA
        misfits = [(c.title, word) for c in record.challenges if (word := bound_to(other, c.text))]
        if misfits:
            measure.count += 1
            why = " | ".join(f"{title} ({word})" for title, word in misfits)
            measure.offenders.append(Offense(record.index, f"{veranda or yard}: {why}", record.input, record.output))
    return measure


# --- c ----------------------------------------------------------------------------------------------------------------


def line_season(text: str) -> str | None:
    """summer / winter when a line is about exactly one of them; None for neither or both (all-season advice)."""
    text = rx(NOT_SEASONAL).sub("", text)
    summer, winter = find(SUMMER, text), find(WINTER, text)
    if summer and not winter:
        return "summer"
    if winter and not summer:
        return "winter"
    return None


def measure_season_replies(records: list[Record]) -> Measure:
    measure = Measure("c.season.reply", "season contradictions (free_text msg vs line)", 0, 0, "0")
    for record in records:
        if record.task != "free_text":
            continue
        hot, cold = find(MSG_HOT, record.input), find(MSG_COLD, record.input)
        rain, monsoon = find(MSG_RAIN, record.input), find(MSG_MONSOON, record.input)
        if not (hot or cold or rain):
            continue
        measure.denominator += 1
        reasons = []
        for challenge in record.challenges:
            season = line_season(challenge.text)
            if hot and not cold and season == "winter":
                reasons.append(f"hot msg({hot}) vs winter line({find(WINTER, challenge.text)})")
            if cold and not hot and season == "summer":
                reasons.append(f"cold msg({cold}) vs summer line({find(SUMMER, challenge.text)})")
            if monsoon and season == "winter":
                reasons.append(f"monsoon msg vs winter line({find(WINTER, challenge.text)})")
            if rain and find(NEEDS_SUN, challenge.text):
                reasons.append(f"rain msg({rain}) vs sun line({find(NEEDS_SUN, challenge.text)})")
        if reasons:
            measure.count += 1
            measure.offenders.append(Offense(record.index, "; ".join(reasons), record.input, record.output))
    measure.passed = measure.count == 0
    return measure


def measure_season_mixed(records: list[Record]) -> Measure:
    measure = Measure("c.season.mixed", "answers with both a summer and a winter line", 0, 0, "0")
    for record in records:
        if record.task == "feedback":
            continue
        measure.denominator += 1
        seasons = {line_season(c.text) for c in record.challenges}
        if {"summer", "winter"} <= seasons:
            measure.count += 1
            measure.offenders.append(Offense(record.index, "summer + winter lines", record.input, record.output))
    measure.passed = measure.count == 0
    return measure


# --- d ----------------------------------------------------------------------------------------------------------------


def measure_recommend(records: list[Record]) -> Measure:
    measure = Measure("d.recommend", "unsupported recommend sentences (base_info naming loc/work)", 0, 0, "<= 10%")
    for record in records:
        if record.task != "base_info":
            continue
        named = [aspect for aspect in (record.location, record.work_type) if find(NAMES[aspect], record.recommend)]
        if not named:
            continue
        measure.denominator += 1
        body = " ".join(c.text for c in record.challenges)
        unsupported = [aspect for aspect in named if not find(EVIDENCE[aspect], body)]
        if unsupported:
            measure.count += 1
            why = "names " + ", ".join(unsupported) + " without support"
            measure.offenders.append(Offense(record.index, why, record.input, record.output))
    measure.passed = measure.share <= 0.10
    return measure


# --- e ----------------------------------------------------------------------------------------------------------------


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def title_named(title: str, output: str) -> bool:
    """The title, or the title minus its last (conjugated) syllable, appears in the output, spaces ignored."""
    flat_title, flat_out = squash(title), squash(output)
    return flat_title in flat_out or (len(flat_title) >= 4 and flat_title[:-1] in flat_out)


def week_items(raw_input: str) -> tuple[list[str], list[str], list[str]]:
    """(failed titles, idle group titles, succeeded titles) of one week."""
    week = json.loads(raw_input)
    failed, idle, succeeded = [], [], []
    for item in week.get("personalChallenges", []):
        (succeeded if item.get("isSuccess") else failed).append(item["title"])
    for group in week.get("groupChallenges", []):
        submissions = group.get("submissions", [])
        if not submissions:
            idle.append(group["title"])
        elif any(s.get("isSuccess") for s in submissions):
            succeeded.append(group["title"])
        else:
            failed.append(group["title"])
    return failed, idle, succeeded


def measure_feedback(records: list[Record]) -> tuple[Measure, Measure]:
    fail = Measure("e.feedback.fail", "feedback: every failure/idle group addressed", 0, 0, ">= 95%")
    win = Measure("e.feedback.success", "feedback: every success named or aggregated", 0, 0)
    for record in records:
        if record.task != "feedback":
            continue
        try:
            failed, idle, succeeded = week_items(record.input)
        except (json.JSONDecodeError, KeyError, AttributeError):
            continue
        titles_masked = record.output
        for title in failed + idle + succeeded:
            titles_masked = titles_masked.replace(title, "□")
        aggregate = find(AGGREGATE, titles_masked)
        for measure, titles in ((fail, failed + idle), (win, succeeded)):
            if not titles:
                continue
            measure.denominator += 1
            missing = [t for t in titles if not title_named(t, record.output)]
            if missing and aggregate is None:
                measure.offenders.append(
                    Offense(record.index, "not addressed: " + " | ".join(missing), "", record.output)
                )
            else:
                measure.count += 1
    fail.passed = fail.share >= 0.95
    return fail, win


# --- f ----------------------------------------------------------------------------------------------------------------


def main_need(message: str) -> tuple[str, str] | None:
    """(need, lexicon a line must show) for the message's main need, by a fixed priority; None if none is seen."""
    for topic, pattern in TOPIC_IN_MESSAGE.items():
        if find(pattern, message):
            return f"topic:{topic}", CATEGORY_WORDS[topic]
    ordered: list[tuple[str, str, str]] = [
        ("pet", LICENSE["pet"], WITH_PET),
        ("child", LICENSE["child"], WITH_CHILD),
        ("hot", MSG_HOT, HOT_FIT),
        ("cold", MSG_COLD, COLD_FIT),
        ("rain", MSG_RAIN, RAIN_FIT),
        ("home", MSG_HOME, "!" + OUTDOOR),
        ("commute", MSG_COMMUTE, ON_THE_WAY),
        ("shopping", MSG_SHOPPING, SHOPPING),
        ("exercise", MSG_EXERCISE, EXERCISE),
        ("outdoors", MSG_OUTDOOR, OUTDOOR),
        ("tired", MSG_TIRED, "!" + EFFORTFUL),
        ("busy", MSG_BUSY, "!" + TAKES_LONG),
        ("free", MSG_FREE, "!" + COSTS_MONEY),
        ("alone", MSG_ALONE, "!" + NEEDS_OTHERS),
        ("social", MSG_SOCIAL, TOGETHER),
    ]
    for need, message_pattern, line_pattern in ordered:
        if find(message_pattern, message):
            return need, line_pattern
    return None


def meets(line_pattern: str, challenge: Challenge) -> bool:
    """A leading "!" means the title must NOT show the lexicon (tired, busy, no money, at home): the title names the
    activity, while descriptions mention places and purchases in passing. Otherwise the whole line must show it."""
    if line_pattern.startswith("!"):
        return find(line_pattern[1:], challenge.title) is None
    return find(line_pattern, challenge.text) is not None


def measure_free_fit(records: list[Record]) -> tuple[Measure, Measure, Measure, dict[str, list[int]]]:
    detected = Measure("f.need", "free_text: messages with a detectable need", 0, 0)
    fit = Measure("f.fit", "free_text: all three lines meet the main need", 0, 0)
    answered = Measure("f.question", "free_text: question answered by a definition", 0, 0)
    by_need: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        if record.task != "free_text":
            continue
        detected.denominator += 1
        need = main_need(record.input)
        if need is not None:
            detected.count += 1
            fit.denominator += 1
            name, line_pattern = need
            by_need[name][1] += 1
            failing = [c.title for c in record.challenges if not meets(line_pattern, c)]
            if failing or len(record.challenges) != 3:
                fit.offenders.append(
                    Offense(record.index, f"{name}: misses " + " | ".join(failing), record.input, record.output)
                )
            else:
                fit.count += 1
                by_need[name][0] += 1
        question = QUESTION.search(record.input)
        if question:
            answered.denominator += 1
            term = question.group(1)
            heads = {term, term.split()[-1]}  # "요즘 플로깅" -> also "플로깅"
            particles = r"(?:은|는|이란|란|이라는 건|라는 건|이|가)? .*"
            if any(rx(re.escape(head) + particles + DEFINITION_END).search(record.recommend) for head in heads):
                answered.count += 1
            else:
                answered.offenders.append(Offense(record.index, f"asks about {term}", record.input, record.recommend))
    detected.offenders = []
    return detected, fit, answered, dict(by_need)


# --- g ----------------------------------------------------------------------------------------------------------------


def measure_counts(records: list[Record]) -> list[Measure]:
    descriptions: dict[str, set[str]] = defaultdict(set)
    for record in records:
        for challenge in record.challenges:
            descriptions[challenge.title].add(challenge.description)
    titles = Measure("g.titles", "distinct challenge titles", len(descriptions), 0, ">= 480")
    titles.value, titles.passed = float(len(descriptions)), len(descriptions) >= 480
    mean = sum(len(v) for v in descriptions.values()) / len(descriptions) if descriptions else 0.0
    per_title = Measure("g.descriptions", "mean distinct descriptions per title", 0, 0, ">= 2.5")
    per_title.value, per_title.passed = mean, mean >= 2.5
    inputs = {r.input for r in records if r.task == "free_text"}
    free_inputs = Measure("g.free_inputs", "distinct free_text inputs", len(inputs), 0, ">= 1500")
    free_inputs.value, free_inputs.passed = float(len(inputs)), len(inputs) >= 1500
    numbers = Measure("g.sino_numbers", "outputs with spelled-out Sino-Korean numbers", 0, 0, "<= 0.5%")
    for record in records:
        numbers.denominator += 1
        word = find(SINO_NUMBER, record.output)
        if word:
            numbers.count += 1
            numbers.offenders.append(Offense(record.index, f"number: {word}", record.input[:80], record.output))
    numbers.passed = numbers.share <= 0.005
    return [titles, per_title, free_inputs, numbers]


# --------------------------------------------------------------------------------------------------------------------


def run(records: list[Record]) -> tuple[list[Measure], dict[str, list[int]]]:
    measures = [
        measure_presumption(records, "base_info"),
        measure_presumption(records, "free_text"),
        measure_places(records, "base_info"),
        measure_places(records, "free_text"),
        measure_yard_or_veranda(records),
        measure_season_replies(records),
        measure_season_mixed(records),
        measure_recommend(records),
        *measure_feedback(records),
    ]
    detected, fit, answered, by_need = measure_free_fit(records)
    measures += [detected, fit, answered, *measure_counts(records)]
    return measures, by_need


def verdict(measure: Measure) -> str:
    return "-" if measure.passed is None else ("PASS" if measure.passed else "FAIL")


def render(measures: Iterable[Measure], by_need: dict[str, list[int]], examples: int, tasks: Counter[str]) -> str:
    out = [f"records: {sum(tasks.values())} ({', '.join(f'{k} {v}' for k, v in sorted(tasks.items()))})", ""]
    header = f"{'measure':<24} {'description':<60} {'count':>7} {'denom':>7} {'share':>8} {'target':>8}  result"
    out += [header, "-" * len(header)]
    for m in measures:
        if m.value is not None:
            shown = f"{m.value:.2f}" if m.key == "g.descriptions" else f"{m.value:.0f}"
            out.append(f"{m.key:<24} {m.name:<60} {shown:>7} {'':>7} {'':>8} {m.target:>8}  {verdict(m)}")
        else:
            share = f"{100 * m.share:.2f}%"
            out.append(
                f"{m.key:<24} {m.name:<60} {m.count:>7} {m.denominator:>7} {share:>8} {m.target:>8}  {verdict(m)}"
            )
    out += ["", "free_text fit by main need (met / detected):"]
    for need, (met, total) in sorted(by_need.items(), key=lambda kv: -kv[1][1]):
        out.append(f"  {need:<22} {met:>5} / {total:<5} {100 * met / total:6.1f}%")
    if examples:
        for m in measures:
            if not m.offenders:
                continue
            out += ["", f"== {m.key}: {len(m.offenders)} offending, first {min(examples, len(m.offenders))}"]
            for offense in m.offenders[:examples]:
                out.append(f"  #{offense.index} [{offense.reason}]")
                if offense.input:
                    out.append(f"    input:  {offense.input}")
                out.append("    text:   " + offense.text.replace("\n", "\n            "))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures (and offender indexes) as JSON here")
    parser.add_argument("--examples", type=int, default=0, help="print up to N offending records per measure")
    args = parser.parse_args(argv)
    records = load(args.dataset)
    measures, by_need = run(records)
    print(render(measures, by_need, args.examples, Counter(r.task for r in records)))
    if args.json:
        payload = {
            "dataset": str(args.dataset),
            "measures": [
                {
                    **{k: v for k, v in asdict(m).items() if k != "offenders"},
                    "share": m.share,
                    "offender_indexes": sorted({o.index for o in m.offenders}),
                }
                for m in measures
            ],
            "free_text_fit_by_need": by_need,
        }
        args.json.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
